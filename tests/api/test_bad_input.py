"""Bad input gets a clear 4xx with the {error, statusCode} envelope, and changes nothing."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer, short_tempdir

# Both engines: the same server behaviour on SQLite and on PostgreSQL (one server per engine for the module).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("ash_server", ["sqlite", "postgresql"], indirect=True, scope="module"),
]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "statusCode"}, body
    assert body["statusCode"] == status and isinstance(body["error"], str) and body["error"]
    for fragment in fragments:
        assert fragment in body["error"], body


@pytest.fixture(scope="module")
def client(ash_server: AshServer) -> Iterator[httpx.Client]:
    with ash_server.client() as c:
        yield c


@pytest.fixture(scope="module")
def ended_session(client: httpx.Client, fake_model: FakeAnthropic) -> str:
    path = str(REPO / "examples" / "hello-agent")
    assert client.post("/api/agents", json={"name": "bad-input", "path": path}).status_code == 201
    session = client.post("/api/sessions", json={"agent": "bad-input"}).json()["session"]
    assert client.delete(f"/api/sessions/{session['id']}").json()["session"]["status"] == "ended"
    return str(session["id"])


def test_missing_and_wrong_auth_are_401(ash_server: AshServer) -> None:
    assert_error(httpx.get(ash_server.url + "/api/agents"), 401, "Authorization")
    wrong = {"Authorization": "Bearer ash_not-a-real-key"}
    assert_error(httpx.get(ash_server.url + "/api/agents", headers=wrong), 401, "Invalid API key")
    assert_error(httpx.get(ash_server.url + "/api/agents", headers={"Authorization": "Basic abc"}), 401)
    assert_error(httpx.get(ash_server.url + "/metrics-nope", headers=wrong), 404)
    # /health is the one open route: the API's description needs a key too.
    assert httpx.get(ash_server.url + "/health").status_code == 200
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/json", "/metrics"):
        assert_error(httpx.get(ash_server.url + path), 401, "Authorization")


def test_unknown_agent_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/agents/nope"), 404, "nope")
    assert_error(client.post("/api/sessions", json={"agent": "nope"}), 404, "nope")
    assert_error(client.delete("/api/agents/nope"), 404)
    assert_error(client.patch("/api/agents/nope", json={"env": {"A": "b"}}), 404)


def test_unknown_or_malformed_session_ids(client: httpx.Client) -> None:
    assert_error(client.get(f"/api/sessions/{uuid.uuid4()}"), 404)
    assert_error(client.post(f"/api/sessions/{uuid.uuid4()}/resume"), 404)
    assert_error(client.get("/api/sessions/not-a-uuid"), 400)


def test_bad_json_and_invalid_bodies_are_400(client: httpx.Client) -> None:
    bad = client.post("/api/agents", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(bad, 400, "JSON")
    assert_error(client.post("/api/agents", json={"name": "has space", "files": []}), 400, "name")
    assert_error(client.post("/api/agents", json={"files": []}), 400, "name")
    assert_error(client.post("/api/sessions", json={}), 400, "agent")
    assert_error(client.get("/api/sessions", params={"status": "sleeping"}), 400, "status")
    assert_error(client.get("/api/sessions", params={"limit": 0}), 400, "limit")
    files = [{"path": "CLAUDE.md", "content": "!!!not base64!!!"}]
    assert_error(client.post("/api/agents", json={"name": "b64", "files": files}), 400, "base64")
    env = {"1BAD": "x"}
    assert_error(client.post("/api/agents", json={"name": "envy", "systemPrompt": "hi", "env": env}), 400, "1BAD")


def test_agent_folder_without_claude_md_is_400(client: httpx.Client) -> None:
    # Uploaded files without one get a placeholder, as in the reference (tests/api/test_deploy_paths.py); a server
    # folder must have its own.
    folder = short_tempdir()
    (folder / "notes.txt").write_text("no CLAUDE.md")
    assert_error(client.post("/api/agents", json={"name": "no-prompt", "path": str(folder)}), 400, "CLAUDE.md")
    assert_error(client.get("/api/agents/no-prompt"), 404)  # nothing was half-created


def test_paths_are_confined(client: httpx.Client) -> None:
    for bad in ["../escape.md", "/etc/passwd", "a/../../b", "~/x"]:
        files = [{"path": "CLAUDE.md", "content": _b64(b"x")}, {"path": bad, "content": _b64(b"x")}]
        assert_error(client.post("/api/agents", json={"name": "escape", "files": files}), 400)
    # Relative paths are taken under the first deploy root, and stay under it.
    assert_error(client.post("/api/agents", json={"name": "rel", "path": "relative/folder"}), 400, "no such folder")
    assert_error(client.post("/api/agents", json={"name": "rel", "path": "../../etc"}), 400, "ASH_AGENT_ROOTS")
    assert_error(client.post("/api/agents", json={"name": "etc", "path": "/etc"}), 400, "ASH_AGENT_ROOTS")
    # A symlink out of the folder is refused at deploy; the agent files API stays inside the agent folder.
    folder = short_tempdir()
    (folder / "CLAUDE.md").write_text("prompt")
    (folder / "leak").symlink_to("/etc/hostname")
    assert_error(client.post("/api/agents", json={"name": "linky", "path": str(folder)}), 400, "outside")
    (folder / "leak").unlink()
    assert client.post("/api/agents", json={"name": "linky", "path": str(folder)}).status_code == 201
    assert_error(client.get("/api/agents/linky/files/leak"), 404)
    assert_error(client.get("/api/agents/linky/files/..%2F..%2Fapi-key"), 400)
    assert client.get("/api/agents/linky/files/CLAUDE.md", params={"format": "raw"}).content == b"prompt"
    assert client.get("/api/agents/linky/files/CLAUDE.md").json()["content"] == "prompt"  # JSON by default


def test_message_to_an_ended_session_is_refused(client: httpx.Client, ended_session: str) -> None:
    assert_error(client.post(f"/api/sessions/{ended_session}/messages", json={"content": "hi"}), 400, "ended")
    assert_error(client.post(f"/api/sessions/{ended_session}/resume"), 410, "ended")
    assert_error(client.post(f"/api/sessions/{ended_session}/pause"), 410)
    messages = client.get(f"/api/sessions/{ended_session}/messages").json()["messages"]
    assert messages == []  # the refused message was not stored


def test_invalid_message_bodies(client: httpx.Client, ended_session: str) -> None:
    url = f"/api/sessions/{ended_session}/messages"
    assert_error(client.post(url, json={}), 400, "content")
    assert_error(client.post(url, json={"content": [{"type": "video", "url": "x"}]}), 400)
    assert_error(client.post(url, json={"content": []}), 400)
    assert_error(client.post(url, json={"content": "hi", "maxTurns": 0}), 400, "maxTurns")
    assert_error(client.post(url, json={"content": "x" * 500_001}), 413)


def test_redeploy_bumps_version_and_env_is_redacted(client: httpx.Client, tmp_path: Path) -> None:
    files = [{"path": "CLAUDE.md", "content": _b64(b"v1")}]
    first = client.post("/api/agents", json={"name": "versioned", "files": files, "env": {"TOKEN": "s3cret"}})
    assert first.status_code == 201
    agent = first.json()["agent"]
    assert agent["version"] == 1 and agent["env"] == {"TOKEN": "***"} and "s3cret" not in first.text
    second = client.post("/api/agents", json={"name": "versioned", "files": files}).json()["agent"]
    assert second["version"] == 2 and second["id"] == agent["id"]
    assert client.get("/api/agents/versioned/files/CLAUDE.md", params={"format": "json"}).json()["content"] == "v1"


def test_invalid_session_options_are_400(client: httpx.Client, fake_model: FakeAnthropic) -> None:
    fake_model.on("never", text("unused"))
    files = [{"path": "CLAUDE.md", "content": _b64(b"x")}]
    assert client.post("/api/agents", json={"name": "badmcp", "files": files}).status_code == 201
    response = client.post("/api/sessions", json={"agent": "badmcp", "permissionMode": "sometimes"})
    assert_error(response, 400, "permissionMode")


def test_integers_past_what_the_database_stores_are_400(client: httpx.Client, ended_session: str) -> None:
    """2^63 and up overflowed the database drivers (a 500); every integer a request gives is bounded."""
    huge = str(2**63)
    assert_error(client.get("/api/sessions", params={"offset": huge}), 400, "offset")
    assert client.get("/api/sessions", params={"offset": str(2**63 - 1)}).status_code == 200
    for route in ("messages", "events"):
        assert_error(client.get(f"/api/sessions/{ended_session}/{route}", params={"after": huge}), 400, "after")
    assert_error(client.get(f"/api/sessions/{ended_session}/stream", params={"lastEventId": huge}), 400)
    assert_error(client.get(f"/api/sessions/{ended_session}/stream", headers={"Last-Event-ID": huge}), 400)
    assert_error(client.get("/api/agents/bad-input/versions/" + "9" * 30), 404, "Version not found")
    body = {"content": "hi", "maxTurns": 2**64}
    assert_error(client.post(f"/api/sessions/{ended_session}/messages", json=body), 400, "maxTurns")


def test_overlong_path_components_are_400(client: httpx.Client, ended_session: str) -> None:
    """ENAMETOOLONG from the file system was a 500: names past 255 bytes, and paths past 4096, are refused first."""
    long_name = "a" * 5000
    for path in (long_name, f"dir/{long_name}", "é" * 128, "/".join(["d"] * 2100)):
        assert_error(client.get(f"/api/agents/bad-input/files/{path}"), 400, "longer than")
        assert_error(client.get(f"/api/sessions/{ended_session}/files/{path}"), 400, "longer than")
        assert_error(client.delete(f"/api/sessions/{ended_session}/files/{path}"), 400, "longer than")
        files = [{"path": "CLAUDE.md", "content": _b64(b"x")}, {"path": path, "content": _b64(b"x")}]
        assert_error(client.post("/api/agents", json={"name": "long-names", "files": files}), 400, "path")
    assert client.get("/api/agents/bad-input/files/" + "a" * 255).status_code == 404  # long, but a name


def test_a_streamed_body_over_the_limit_is_413(client: httpx.Client) -> None:
    """Chunked, so no Content-Length announces the size: the limit is found while the body is read, inside
    FastAPI's body parsing (which would make any error of its reading a 400)."""
    chunk = b" " * (1024 * 1024)
    limit = 64 * 1024 * 1024  # ASH_MAX_REQUEST_BYTES's default

    def body() -> Iterator[bytes]:
        yield b'{"name": "big", "systemPrompt": "'
        for _ in range(limit // len(chunk) + 1):
            yield chunk
        yield b'"}'

    response = client.post("/api/agents", content=body(), headers={"content-type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "exceeds")
    assert client.get("/api/agents/big").status_code == 404


def test_runner_endpoints_refuse_an_unsigned_caller_before_reading_its_body(client: httpx.Client) -> None:
    """With an API key and no runner's signature, a malformed body and a valid one get the same 401: the caller
    learns nothing of what the endpoint takes."""
    for body in ({}, {"id": "r", "url": "http://10.0.0.9:4200", "maxSandboxes": 5, "version": "x"}):
        assert_error(client.post("/api/internal/cluster/register", json=body), 401, "signed by a runner")
    assert_error(client.post("/api/internal/cluster/heartbeat", content=b"{not json"), 401, "signed by a runner")
