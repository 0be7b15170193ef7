"""Attachments through the API on a real server, with their bytes in each store the snapshots use (the data dir, S3
in moto, GCS in the emulator): upload, list, download, delete; the size and type limits; a message naming them
reaches the model as image/document blocks; they survive a restart and go with their session. (Tenant isolation:
tests/api/test_tenants.py sweeps these routes too.)"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from ash_server.attachments import AttachmentService
from ash_server.errors import NotConfigured
from ash_server.store.attachments import AttachmentStore
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer
from tests.support.storage import GcsServer, S3Server

pytestmark = pytest.mark.slow

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module", params=["local", "s3", "gcs"])
def server(request: pytest.FixtureRequest, fake_model: FakeAnthropic) -> Iterator[AshServer]:
    env = {"ASH_MAX_ATTACHMENT_BYTES": "4096"}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        env |= {**s3.env, "ASH_SNAPSHOT_URL": f"s3://{s3.bucket('att-' + uuid.uuid4().hex[:8])}/snap"}
    elif request.param == "gcs":
        gcs: GcsServer = request.getfixturevalue("gcs_server")
        env |= {**gcs.env, "ASH_SNAPSHOT_URL": f"gs://{gcs.bucket('att-' + uuid.uuid4().hex[:8])}/snap"}
    with AshServer(fake_model.url, env=env) as server:
        yield server


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def new_session(client: httpx.Client) -> str:
    assert client.post("/api/agents", json={"name": "att", "path": str(REPO / "examples" / "hello-agent")}).is_success
    created = client.post("/api/sessions", json={"agent": "att"})
    assert created.status_code == 201, created.text
    return str(created.json()["session"]["id"])


def upload(client: httpx.Client, sid: str, name: str, data: bytes, mime: str) -> httpx.Response:
    body = {"filename": name, "content": base64.b64encode(data).decode(), "mimeType": mime}
    return client.post(f"/api/sessions/{sid}/attachments", json=body)


def assert_error(response: httpx.Response, status: int, says: str = "") -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "statusCode"} and says in response.json()["error"]


def test_upload_list_download_delete(client: httpx.Client) -> None:
    sid = new_session(client)
    created = upload(client, sid, "../../dir/pixel.png", PNG, "image/png")
    assert created.status_code == 201, created.text
    attachment: dict[str, Any] = created.json()["attachment"]
    assert (attachment["filename"], attachment["mimeType"], attachment["size"]) == ("pixel.png", "image/png", len(PNG))
    assert attachment["sessionId"] == sid and attachment["messageId"] == "unlinked"
    listed = client.get(f"/api/sessions/{sid}/attachments").json()["attachments"]
    assert [a["id"] for a in listed] == [attachment["id"]]
    got = client.get(f"/api/attachments/{attachment['id']}")
    assert got.status_code == 200 and got.content == PNG and got.headers["content-type"] == "image/png"
    assert "pixel.png" in got.headers["content-disposition"] and got.headers["x-content-type-options"] == "nosniff"
    assert client.delete(f"/api/attachments/{attachment['id']}").status_code == 204
    assert_error(client.get(f"/api/attachments/{attachment['id']}"), 404, "Attachment not found")
    assert client.get(f"/api/sessions/{sid}/attachments").json()["attachments"] == []


def test_limits_and_bad_input(client: httpx.Client) -> None:
    sid = new_session(client)
    assert_error(upload(client, sid, "big.bin", b"x" * 5000, "application/octet-stream"), 413, "4096")
    assert_error(upload(client, sid, "run.exe", b"MZ", "application/x-msdownload"), 415, "Unsupported")
    assert_error(upload(client, sid, "empty.txt", b"", "text/plain"), 400, "Empty")
    bad = {"filename": "x.txt", "content": "not base64!", "mimeType": "text/plain"}
    assert_error(client.post(f"/api/sessions/{sid}/attachments", json=bad), 400, "base64")
    assert_error(client.post(f"/api/sessions/{sid}/attachments", json={"filename": "x"}), 400)
    assert_error(upload(client, str(uuid.uuid4()), "a.txt", b"a", "text/plain"), 404, "Session not found")
    assert_error(client.get("/api/attachments/not-a-uuid"), 400)
    assert client.get(f"/api/sessions/{sid}/attachments").json()["attachments"] == []  # nothing half-stored


def test_a_message_naming_attachments_reaches_the_model(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("describe these", text("A pixel and a note."))
    sid = new_session(client)
    image = upload(client, sid, "pixel.png", PNG, "image/png").json()["attachment"]["id"]
    note = upload(client, sid, "note.txt", b"the note says hello", "text/plain").json()["attachment"]["id"]
    body = {"content": "describe these", "attachments": [image, note]}
    with client.stream("POST", f"/api/sessions/{sid}/messages", json=body) as stream:
        assert stream.status_code == 200
        streamed = stream.read().decode()
    assert "A pixel and a note." in streamed
    (request,) = model.requests_with_prompt("describe these")
    blocks = [b for m in request["messages"] if m["role"] == "user" for b in m["content"] if isinstance(b, dict)]
    images = [b for b in blocks if b["type"] == "image"]
    documents = [b for b in blocks if b["type"] == "document"]
    assert images and base64.b64decode(images[0]["source"]["data"]) == PNG
    assert documents and documents[0]["source"]["data"] == "the note says hello"
    other = new_session(client)
    naming_other = {"content": "x", "attachments": [image]}
    assert_error(client.post(f"/api/sessions/{other}/messages", json=naming_other), 404, "another session")


def test_they_survive_a_restart_and_go_with_their_session(server: AshServer, client: httpx.Client) -> None:
    sid = new_session(client)
    kept = upload(client, sid, "keep.txt", b"kept", "text/plain").json()["attachment"]["id"]
    server.stop()
    server.start()
    with server.client() as again:
        assert again.get(f"/api/attachments/{kept}").content == b"kept"
        assert again.delete(f"/api/sessions/{sid}").status_code == 200
        assert_error(again.get(f"/api/attachments/{kept}"), 404)
        assert again.get(f"/api/sessions/{sid}/attachments").json()["attachments"] == []


def test_a_cluster_server_without_a_shared_store_refuses_uploads_clearly(tmp_path: Path) -> None:
    """On coordinators and runners the data dirs are on different machines: attachments need ASH_SNAPSHOT_URL."""
    service = AttachmentService(cast(AttachmentStore, None), None, max_bytes=10, scratch=tmp_path)
    upload = service.upload(
        "t", uuid.uuid4(), filename="a.txt", content_b64="eA==", mime_type="text/plain", message_id=None
    )
    with pytest.raises(NotConfigured, match="ASH_SNAPSHOT_URL"):
        asyncio.run(upload)
