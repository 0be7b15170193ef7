"""The existing Ash Python client (PyPI `ash-ai-sdk`) against a real server: wire compatibility."""

from __future__ import annotations

import httpx
import pytest
from ash_sdk import AshClient
from ash_sdk.models.health_response import HealthResponse
from ash_sdk.streaming import DoneEvent, MessageEvent, SessionStartEvent, TextDeltaEvent, TurnCompleteEvent

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer

# Both engines: the same server behaviour on SQLite and on PostgreSQL (one server per engine for the module).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("ash_server", ["sqlite", "postgresql"], indirect=True, scope="module"),
]


def test_full_session_lifecycle_through_the_python_client(ash_server: AshServer, model: FakeAnthropic) -> None:
    model.on("first contact", text("Hello there, friend!", chunks=4))
    model.on("second ping", text("Still here.", chunks=3))
    model.on("after stop", text("Back again."))
    client = AshClient(ash_server.url, token=ash_server.api_key)

    health = client.health()
    assert HealthResponse.from_dict(health).status == "ok"

    agent = client.deploy_agent("sdk-agent", str(REPO / "examples" / "hello-agent"))
    assert (agent.name, agent.version) == ("sdk-agent", 1)
    assert "sdk-agent" in [a.name for a in client.list_agents()]
    assert client.get_agent("sdk-agent").id == agent.id

    session = client.create_session("sdk-agent")
    assert session.status == "active" and session.agent_name == "sdk-agent" and session.sandbox_id

    # Without partial messages: whole SDK messages only, no deltas.
    events = list(client.send_message_stream(session.id, "first contact"))
    assert isinstance(events[0], SessionStartEvent) and events[0].session_id == str(session.id)
    assert isinstance(events[-1], DoneEvent) and events[-1].session_id == str(session.id)
    assert not [e for e in events if isinstance(e, TextDeltaEvent)]
    kinds = [e.data.get("type") for e in events if isinstance(e, MessageEvent)]
    assert kinds[0] == "system" and "assistant" in kinds and kinds[-1] == "result"
    assert [e.result for e in events if isinstance(e, TurnCompleteEvent)] == ["Hello there, friend!"]
    # CLAUDE.md is the system prompt, as in the reference (not only project memory in the first user message).
    (request,) = model.requests_with_prompt("first contact")
    system = request["system"]
    system_text = system if isinstance(system, str) else " ".join(b.get("text", "") for b in system)
    assert "You are Hello Agent" in system_text

    # With partial messages: text deltas that add up to the reply.
    events = list(client.send_message_stream(session.id, "second ping", include_partial_messages=True))
    deltas = [e.delta for e in events if isinstance(e, TextDeltaEvent)]
    assert len(deltas) == 3 and "".join(deltas) == "Still here."
    assert isinstance(events[-1], DoneEvent)

    assert client.get_session(session.id).status == "active"
    paused = client.pause_session(session.id)
    assert paused.status == "paused"
    resumed = client.resume_session(session.id)
    assert resumed.status == "active" and resumed.sandbox_id == session.sandbox_id  # warm path: same sandbox

    stopped = client.stop_session(session.id)
    assert stopped.status == "stopped" and stopped.sandbox_id == ""
    cold = client.resume_session(session.id)
    assert cold.status == "active" and cold.sandbox_id not in ("", session.sandbox_id)  # cold path: new sandbox
    events = list(client.send_message_stream(session.id, "after stop"))
    assert [e.result for e in events if isinstance(e, TurnCompleteEvent)] == ["Back again."]
    # The new sandbox continued the same conversation: the model saw the earlier prompts again.
    seen = model.user_texts(model.requests_with_prompt("after stop")[-1])
    assert seen[:2] == ["first contact", "second ping"]

    ended = client.end_session(session.id)
    assert ended.status == "ended"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        list(client.send_message_stream(session.id, "anyone?"))
    assert refused.value.response.status_code == 400

    assert [s.id for s in client.list_sessions(agent="sdk-agent", status="ended")] == [session.id]
    client.delete_agent("sdk-agent")
    assert "sdk-agent" not in [a.name for a in client.list_agents()]


async def test_async_streaming_through_the_python_client(ash_server: AshServer, model: FakeAnthropic) -> None:
    model.on("async hello", text("Async hi!", chunks=2))
    client = AshClient(ash_server.url, token=ash_server.api_key)
    client.deploy_agent("sdk-async", str(REPO / "examples" / "hello-agent"))
    session = client.create_session("sdk-async")
    events = [e async for e in client.asend_message_stream(session.id, "async hello", include_partial_messages=True)]
    assert "".join(e.delta for e in events if isinstance(e, TextDeltaEvent)) == "Async hi!"
    assert isinstance(events[-1], DoneEvent)
    client.end_session(session.id)
