"""Workspace access over the API: upload, delete, tar.gz download and upload, live or with no sandbox, confined to
the workspace and size-capped."""

from __future__ import annotations

import base64
import io
import tarfile
from typing import Any

import httpx
import pytest

from tests.api.test_bad_input import assert_error
from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow

LIMIT = 64 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tarball(*members: tuple[str, bytes, bytes | str]) -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if isinstance(payload, bytes):
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload
                tar.addfile(info)
    return b64(raw.getvalue())


def upload(client: httpx.Client, sid: str, files: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return client.post(f"/api/sessions/{sid}/files", json={"files": files, **extra})


def test_workspace_files_and_archives(model: FakeAnthropic) -> None:
    model.on(
        "make links", [tool_use("Bash", {"command": "ln -s /etc etc-link; ln -s /etc/hostname host-link"}), text("ok")]
    )
    model.on("read the upload", [tool_use("Bash", {"command": "cat docs/notes.md"}), text("read")])
    server = AshServer(model.url, env={"ASH_MAX_UPLOAD_BYTES": str(LIMIT)}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "files", "path": path}).status_code == 201
            sid = client.post("/api/sessions", json={"agent": "files"}).json()["session"]["id"]

            # Upload into the live workspace (under targetPath); the agent sees it at once.
            written = upload(client, sid, [{"path": "notes.md", "content": b64(b"# uploaded")}], targetPath="docs")
            assert written.status_code == 200 and written.json() == {"written": ["docs/notes.md"]}
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "read the upload"}) as r:
                assert "# uploaded" in "".join(r.iter_text())
            assert client.get(f"/api/sessions/{sid}/files/docs/notes.md").text == "# uploaded"

            # Confinement: no .., no absolute paths, nothing through the agent's symlinks.
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "make links"}) as r:
                assert "event: done" in "".join(r.iter_text())
            for bad in ("../escape.txt", "/etc/evil", "a/../../x", "etc-link/evil", "host-link"):
                assert_error(upload(client, sid, [{"path": bad, "content": b64(b"x")}]), 400)
            assert_error(upload(client, sid, [{"path": "x", "content": b64(b"x")}], targetPath="../up"), 400)
            assert_error(upload(client, sid, [{"path": "x", "content": "%%% not base64"}]), 400)
            assert_error(client.get(f"/api/sessions/{sid}/files/etc-link/hostname"), 400)
            assert_error(client.delete(f"/api/sessions/{sid}/files/etc-link/hostname"), 400)
            assert_error(client.delete(f"/api/sessions/{sid}/files/..%2F..%2Fapi-key"), 400)
            # Oversize: more than ASH_MAX_UPLOAD_BYTES decoded, all of it refused.
            big = [{"path": f"big{i}.bin", "content": b64(b"\0" * (LIMIT // 2))} for i in range(3)]
            assert_error(upload(client, sid, big), 413)
            assert client.get(f"/api/sessions/{sid}/files/big0.bin").status_code == 404

            # Delete: a link goes, never what it points at.
            assert client.delete(f"/api/sessions/{sid}/files/host-link").json() == {"deleted": True}
            assert client.delete(f"/api/sessions/{sid}/files/docs").json() == {"deleted": True}
            assert client.get(f"/api/sessions/{sid}/files/docs/notes.md").status_code == 404
            assert client.delete(f"/api/sessions/{sid}/files/docs").status_code == 404

            # Download: a tar.gz of the workspace, links as links.
            download = client.get(f"/api/sessions/{sid}/workspace")
            assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
            with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as tar:
                members = {m.name: m for m in tar.getmembers()}
            assert "CLAUDE.md" in members and members["etc-link"].issym()
            assert not [name for name in members if name.startswith("etc-link/")]

            # Upload a bundle: files and folders only; anything else refuses the whole bundle.
            good = tarball(("src", tarfile.DIRTYPE, b""), ("src/app.py", tarfile.REGTYPE, b"print(1)\n"))
            response = client.post(f"/api/sessions/{sid}/workspace", json={"bundle": good})
            assert response.status_code == 200 and response.json()["written"] == 1
            assert client.get(f"/api/sessions/{sid}/files/src/app.py").text == "print(1)\n"
            for hostile in (
                tarball(("ok.txt", tarfile.REGTYPE, b"x"), ("../../escape.txt", tarfile.REGTYPE, b"x")),
                tarball(("/tmp/ash-bundle-escape.txt", tarfile.REGTYPE, b"x")),
                tarball(("link", tarfile.SYMTYPE, "/etc/shadow")),
                tarball(("hard", tarfile.LNKTYPE, "CLAUDE.md")),
                tarball(("etc-link/passwd", tarfile.REGTYPE, b"x")),
            ):
                assert_error(client.post(f"/api/sessions/{sid}/workspace", json={"bundle": hostile}), 400)
            assert client.get(f"/api/sessions/{sid}/files/ok.txt").status_code == 404
            huge = tarball(("huge.bin", tarfile.REGTYPE, b"\0" * (LIMIT + 1)))
            assert_error(client.post(f"/api/sessions/{sid}/workspace", json={"bundle": huge}), 413)
            assert_error(client.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(b"junk")}), 400)

            # With no sandbox (stopped): the same, from this server's copy; the logs endpoint still answers.
            logs = client.get(f"/api/sessions/{sid}/logs").json()
            assert logs["source"] == "sandbox"
            assert client.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
            listing = client.get(f"/api/sessions/{sid}/files").json()
            assert listing["source"] == "snapshot" and "src/app.py" in [f["path"] for f in listing["files"]]
            assert upload(client, sid, [{"path": "later.txt", "content": b64(b"later")}]).status_code == 200
            assert client.get(f"/api/sessions/{sid}/files/later.txt").text == "later"
            assert client.get(f"/api/sessions/{sid}/logs").json()["source"] == "none"
            # An ended session's files can still be read, not changed.
            client.delete(f"/api/sessions/{sid}")
            assert client.get(f"/api/sessions/{sid}/files/later.txt").text == "later"
            assert_error(upload(client, sid, [{"path": "x", "content": b64(b"x")}]), 410)
    finally:
        server.cleanup()
