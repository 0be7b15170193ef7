"""`ash backup` then `ash restore` into an empty data dir (and, on PostgreSQL, an empty database) gives back every
agent, session and message of every tenant; the restored server resumes a session on the cold path and the agent
remembers the conversation (its transcript came back with the session's folder)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer, short_tempdir
from tests.support.sse import turn_text as turn

pytestmark = pytest.mark.slow


def ash(server: AshServer, *args: str, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "ash_cli", "--json", *args],
        env={**server.env, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def snapshot(client: httpx.Client) -> dict[str, Any]:
    """Everything a tenant can see of its agents, sessions and messages."""
    sessions = client.get("/api/sessions").json()["sessions"]
    return {
        "agents": [(a["id"], a["name"], a["version"]) for a in client.get("/api/agents").json()["agents"]],
        "sessions": sorted((s["id"], s["agentName"], s["createdAt"]) for s in sessions),
        "messages": {
            s["id"]: [
                (m["id"], m["sequence"], m["role"], m["content"])
                for m in client.get(f"/api/sessions/{s['id']}/messages", params={"limit": 1000}).json()["messages"]
            ]
            for s in sessions
        },
    }


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_backup_and_restore_give_back_everything(
    engine: str, request: pytest.FixtureRequest, model: FakeAnthropic
) -> None:
    postgres = request.getfixturevalue("postgres") if engine == "postgresql" else None
    model.on("my name is Ada", text("Nice to meet you, Ada."))
    model.on("remember the number 42", text("Noted: 42."))
    model.on("what do you remember", text("Your name is Ada and the number is 42."))
    original = AshServer(model.url, database_url=postgres.database() if postgres else None)
    restored: AshServer | None = None
    archive = short_tempdir() / "ash-backup.tar.gz"
    try:
        original.start()
        key_b = original.admin("create-tenant", "team-b")["key"]
        prompt = base64.b64encode(b"You are a helpful agent with a good memory.").decode()
        with original.client() as a:
            files = [{"path": "CLAUDE.md", "content": prompt}]
            assert a.post("/api/agents", json={"name": "memory", "files": files}).status_code == 201
            session_id = a.post("/api/sessions", json={"agent": "memory"}).json()["session"]["id"]
            turn(a, session_id, "my name is Ada")
            turn(a, session_id, "remember the number 42")
            assert a.post(f"/api/sessions/{session_id}/fork").status_code == 201  # a second, paused session
            before_a = snapshot(a)
        with httpx.Client(base_url=original.url, headers={"Authorization": f"Bearer {key_b}"}) as b:
            assert b.post("/api/agents", json={"name": "b-agent", "systemPrompt": "B"}).status_code == 201
            before_b = snapshot(b)

        # Taken while the server runs: the database through its online backup (or pg_dump), then the files.
        summary = ash(original, "backup", str(archive))
        assert (summary["agents"], summary["sessions"], summary["tenants"]) == (2, 2, 2)
        assert summary["messages"] == sum(len(m) for m in before_a["messages"].values())
        assert archive.stat().st_mode & 0o077 == 0  # it holds the server secret: private
        original.kill()  # whatever happens to the server now, the backup has it all

        restored = AshServer(model.url, database_url=postgres.database() if postgres else None)
        counts = ash(restored, "restore", str(archive))
        assert counts["messages"] == summary["messages"]
        # Restoring again is refused: the data dir is no longer empty.
        refused = subprocess.run(
            [sys.executable, "-m", "ash_cli", "restore", str(archive)],
            env={**restored.env},
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 1 and "not empty" in refused.stderr

        restored.start()
        # The key files and the server secret came back: the same keys work.
        assert restored.api_key == original.api_key
        with (
            restored.client() as a,
            httpx.Client(base_url=restored.url, headers={"Authorization": f"Bearer {key_b}"}) as b,
        ):
            assert snapshot(a) == before_a
            assert snapshot(b) == before_b
            # Live sessions come back paused (no sandbox survives); resume takes the cold path on the restored
            # folder, and the agent remembers the conversation.
            assert a.get(f"/api/sessions/{session_id}").json()["session"]["status"] == "paused"
            assert a.post(f"/api/sessions/{session_id}/resume").json()["session"]["status"] == "active"
            turn(a, session_id, "what do you remember?")
            seen = model.user_texts(model.requests_with_prompt("what do you remember")[-1])
            assert seen[:2] == ["my name is Ada", "remember the number 42"]
            assert a.get("/api/agents/memory/files/CLAUDE.md", params={"format": "raw"}).content == base64.b64decode(
                prompt
            )
    finally:
        original.cleanup()
        if restored is not None:
            restored.cleanup()
        archive.unlink(missing_ok=True)
        archive.parent.rmdir()


def test_backup_of_a_data_dir_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ash_cli", "backup", str(tmp_path / "x.tar.gz")],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ASH_DATA_DIR": str(tmp_path / "missing")},
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "no data dir" in result.stderr


def test_a_non_root_restore_gives_files_back_their_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's and the unit's server is not root but holds CAP_CHOWN: tarfile restores owners for root only, so
    the restore does it, or a session folder (0700, the sandbox user's) would be unreachable for its next sandbox."""
    import os
    import tarfile

    from ash_server import backup

    source = tmp_path / "source"
    (source / "sessions" / "s1" / "workspace").mkdir(parents=True)
    os.chown(source / "sessions" / "s1", 4321, 4321)
    os.chmod(source / "sessions" / "s1", 0o700)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=backup.DATA_PREFIX)
    destination = tmp_path / "restored"
    destination.mkdir()
    with tarfile.open(archive) as tar:
        planned = backup._plan(tar)
        for member in planned:
            tar.extract(member, destination, set_attrs=False, **backup.TRUSTED)
    assert (destination / "sessions" / "s1").stat().st_uid != 4321
    monkeypatch.setattr(os, "geteuid", lambda: 10000)  # as the non-root server (this test has CAP_CHOWN: root)
    backup._restore_owners(destination, planned)
    restored = (destination / "sessions" / "s1").stat()
    assert (restored.st_uid, restored.st_gid, restored.st_mode & 0o777) == (4321, 4321, 0o700)
