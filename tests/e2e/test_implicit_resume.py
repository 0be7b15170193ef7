"""A message continues a paused or stopped session by itself (issue 17): after a pause, a stop and a server
restart, the next message just works and the model sees the whole conversation; `autoResume: false` keeps the
explicit contract (400 until resumed)."""

from __future__ import annotations

import json

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text
from tests.support.server import REPO, AshServer
from tests.support.sse import turn_text

pytestmark = pytest.mark.slow


def _turn(server: AshServer, session_id: str, prompt: str) -> str:
    with server.client() as client:
        return turn_text(client, session_id, prompt)


def _implicit_resumes(server: AshServer, session_id: str) -> list[dict[str, object]]:
    with server.client() as client:
        events = client.get(f"/api/sessions/{session_id}/events").json()["events"]
    found = []
    for event in events:
        data = json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]
        if event["type"] == "lifecycle" and data.get("implicit"):
            found.append(data)
    return found


def test_messages_resume_paused_stopped_and_restarted_sessions(model: FakeAnthropic) -> None:
    model.on("my name is", text("Hello, Ida."))
    model.on("I like", text("Noted."))
    model.on("after the stop", text("Still here."))
    model.on("who am I", echo())
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "hello", "path": path}).status_code == 201
            sid = client.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        _turn(server, sid, "my name is Ida")

        with server.client() as client:
            assert client.post(f"/api/sessions/{sid}/pause").json()["session"]["status"] == "paused"
            refused = client.post(f"/api/sessions/{sid}/messages", json={"content": "I like tea", "autoResume": False})
            assert refused.status_code == 400, refused.text
            assert "resume it first" in refused.json()["error"]
        _turn(server, sid, "I like tea")  # paused (warm): the message resumes it
        with server.client() as client:
            assert client.get(f"/api/sessions/{sid}").json()["session"]["status"] == "active"
            assert client.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
        _turn(server, sid, "after the stop")  # stopped (cold): a new sandbox, the same conversation

        server.stop()
        server.start()
        with server.client() as client:
            assert client.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused"
        _turn(server, sid, "who am I")  # after a restart nothing needs a manual resume

        request = model.requests_with_prompt("who am I")[-1]
        assert model.user_texts(request) == ["my name is Ida", "I like tea", "after the stop", "who am I"]
        paths = [event["path"] for event in _implicit_resumes(server, sid)]
        assert paths == ["warm", "cold", "cold"]
    finally:
        server.cleanup()
