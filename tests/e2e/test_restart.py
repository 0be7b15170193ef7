"""A conversation survives kill -9 of the server, and no sandbox process outlives it."""

from __future__ import annotations

import base64
import time

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text
from tests.support.processes import pids_with_env
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow


def _turn(server: AshServer, session_id: str, prompt: str) -> str:
    with (
        server.client() as client,
        client.stream("POST", f"/api/sessions/{session_id}/messages", json={"content": prompt}) as response,
    ):
        assert response.status_code == 200, response.read()
        body = "".join(response.iter_text())
    assert body.rstrip().splitlines()[-2] == "event: done"
    return body


def test_conversation_survives_kill_9(model: FakeAnthropic) -> None:
    model.on("my name is", text("Nice to meet you, Zed."))
    model.on("favourite colour", text("Noted: teal."))
    model.on("what do you remember", echo())
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            claude_md = (REPO / "examples" / "hello-agent" / "CLAUDE.md").read_bytes()
            files = [{"path": "CLAUDE.md", "content": base64.b64encode(claude_md).decode()}]
            assert client.post("/api/agents", json={"name": "rememberer", "files": files}).status_code == 201
            session = client.post("/api/sessions", json={"agent": "rememberer"}).json()["session"]
        sid, sandbox_id = session["id"], session["sandboxId"]
        _turn(server, sid, "my name is Zed")
        before = _turn(server, sid, "my favourite colour is teal")
        assert pids_with_env("ASH_SANDBOX_ID", sandbox_id), "the sandbox should be running before the kill"

        server.kill()
        # The bridge dies with the server (parent-death signal), taking its whole process group with it.
        deadline = time.monotonic() + 10
        while pids_with_env("ASH_SANDBOX_ID", sandbox_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids_with_env("ASH_SANDBOX_ID", sandbox_id) == []

        server.start()
        with server.client() as client:
            after = client.get(f"/api/sessions/{sid}").json()["session"]
            assert after["status"] == "paused"  # it had a sandbox when the server died
            messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
            assert messages[0]["role"] == "user" and "my name is Zed" in messages[0]["content"]
            assert sum(1 for m in messages if '"type":"result"' in m["content"]) == 2
            # A client that lost the second turn's stream re-attaches after the restart and gets the rest of it.
            frames = [line for line in before.splitlines() if line.startswith(("id: ", "event: "))]
            ids = [int(line[4:]) for line in frames if line.startswith("id: ")]
            with client.stream("GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": str(ids[1])}) as r:
                replayed = [line for line in r.iter_lines() if line.startswith(("id: ", "event: "))]
            assert replayed == frames[4:]  # everything after the second frame, same ids, same events
            resumed = client.post(f"/api/sessions/{sid}/resume").json()["session"]
            assert resumed["status"] == "active" and resumed["sandboxId"] != sandbox_id
        _turn(server, sid, "what do you remember")
        request = model.requests_with_prompt("what do you remember")[-1]
        assert model.user_texts(request) == ["my name is Zed", "my favourite colour is teal", "what do you remember"]
    finally:
        server.cleanup()


def test_sandboxes_are_stopped_on_graceful_shutdown(model: FakeAnthropic) -> None:
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "hello", "path": path}).status_code == 201
            session = client.post("/api/sessions", json={"agent": "hello"}).json()["session"]
        assert pids_with_env("ASH_SANDBOX_ID", session["sandboxId"])
        server.stop()
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15 either way: the log tells.
        assert "Application shutdown complete" in server.log()
        assert pids_with_env("ASH_SANDBOX_ID", session["sandboxId"]) == []
    finally:
        server.cleanup()
