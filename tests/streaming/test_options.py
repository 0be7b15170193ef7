"""Per-message and per-session SDK options reach the SDK: seen at the fake model or in the SDK's behaviour."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.streaming.test_streaming import turn
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(ash_server: AshServer) -> Iterator[httpx.Client]:
    with ash_server.client() as c:
        path = str(REPO / "examples" / "hello-agent")
        assert c.post("/api/agents", json={"name": "optioned", "path": path}).status_code == 201
        yield c


@pytest.fixture(scope="module")
def sid(client: httpx.Client) -> str:
    return str(
        client.post("/api/sessions", json={"agent": "optioned", "model": "session-model-a"}).json()["session"]["id"]
    )


def last_request(model: FakeAnthropic, prompt: str) -> dict[str, Any]:
    return model.requests_with_prompt(prompt)[-1]


def result_of(frames: list[Any]) -> dict[str, Any]:
    results = [f.data for f in frames if f.event == "message" and f.data.get("type") == "result"]
    assert len(results) == 1
    return dict(results[0])


def test_model_per_session_per_message_and_patched(client: httpx.Client, sid: str, model: FakeAnthropic) -> None:
    model.default = text("ok")
    turn(client, sid, "which model 1")
    assert last_request(model, "which model 1")["model"] == "session-model-a"
    turn(client, sid, "which model 2", model="message-model-b")
    assert last_request(model, "which model 2")["model"] == "message-model-b"
    turn(client, sid, "which model 3")  # a message without a model goes back to the session's
    assert last_request(model, "which model 3")["model"] == "session-model-a"
    patched = client.patch(f"/api/sessions/{sid}/config", json={"model": "patched-model-c"})
    assert patched.status_code == 200
    turn(client, sid, "which model 4")
    assert last_request(model, "which model 4")["model"] == "patched-model-c"


@pytest.mark.parametrize(
    "extra",
    [{"maxTurns": 3}, {"effort": "low"}, {"thinking": {"type": "disabled"}}],
    ids=["maxTurns", "effort", "thinking"],
)
def test_a_message_s_model_does_not_stick_with_other_options(
    client: httpx.Client, model: FakeAnthropic, extra: dict[str, Any]
) -> None:
    """A message's model, together with an option that restarts the SDK client, is that message's only: the next
    plain message runs on the session's model again, and the model switches leave nothing in the conversation."""
    model.default = text("ok")
    session = client.post("/api/sessions", json={"agent": "optioned", "model": "session-model-a"}).json()["session"]
    tag = next(iter(extra))
    turn(client, session["id"], f"override {tag}", model="message-model-b", **extra)
    assert last_request(model, f"override {tag}")["model"] == "message-model-b"
    turn(client, session["id"], f"plain after {tag}")
    assert last_request(model, f"plain after {tag}")["model"] == "session-model-a"
    turn(client, session["id"], f"override again {tag}", model="message-model-b")
    turn(client, session["id"], f"plain again {tag}")
    assert last_request(model, f"plain again {tag}")["model"] == "session-model-a"
    # A session without a model of its own goes back to the CLI's default, not to the last message's.
    bare = client.post("/api/sessions", json={"agent": "optioned"}).json()["session"]["id"]
    turn(client, bare, f"default first {tag}")
    default = last_request(model, f"default first {tag}")["model"]
    assert default != "message-model-b"
    turn(client, bare, f"override bare {tag}", model="message-model-b", **extra)
    turn(client, bare, f"default again {tag}")
    assert last_request(model, f"default again {tag}")["model"] == default
    # And on a new sandbox (the cold path resumes the transcript, whose last model was the override).
    turn(client, bare, f"override before stop {tag}", model="message-model-b")
    assert client.post(f"/api/sessions/{bare}/stop").status_code == 200
    assert client.post(f"/api/sessions/{bare}/resume").status_code == 200
    turn(client, bare, f"default after resume {tag}")
    assert last_request(model, f"default after resume {tag}")["model"] == default
    stored = client.get(f"/api/sessions/{session['id']}/messages", params={"limit": 1000}).json()["messages"]
    echoes = [m["content"][:300] for m in stored if "Set model to" in m["content"]]
    assert not echoes, echoes


def test_effort_and_thinking_reach_the_model(client: httpx.Client, sid: str, model: FakeAnthropic) -> None:
    model.default = text("ok")
    turn(client, sid, "effort please", effort="low")
    assert last_request(model, "effort please")["output_config"]["effort"] == "low"
    # The CLI decides per model whether a thinking budget applies; Sonnet 4.5 takes one.
    sonnet = "claude-sonnet-4-5"
    turn(client, sid, "think hard", model=sonnet, thinking={"type": "enabled", "budgetTokens": 2048})
    thinking = last_request(model, "think hard")["thinking"]
    assert thinking["type"] == "enabled" and thinking["budget_tokens"] == 2048
    turn(client, sid, "do not think", model=sonnet, thinking={"type": "disabled"})
    assert last_request(model, "do not think")["thinking"] == {"type": "disabled"}


def test_max_turns_stops_the_agent_loop(client: httpx.Client, sid: str, model: FakeAnthropic) -> None:
    model.on("loop forever", [tool_use("Bash", {"command": "true"}), tool_use("Bash", {"command": "true"}), text("x")])
    reader = turn(client, sid, "loop forever", maxTurns=1)
    result = result_of(reader.frames)
    assert result["subtype"] == "error_max_turns"


def test_max_budget_stops_the_turn(client: httpx.Client, sid: str, model: FakeAnthropic) -> None:
    model.on("spend money", [tool_use("Bash", {"command": "true"}), tool_use("Bash", {"command": "true"}), text("x")])
    reader = turn(client, sid, "spend money", maxBudgetUsd=0.000001)
    result = result_of(reader.frames)
    assert result["subtype"] == "error_max_budget_usd"


def test_output_format_reaches_the_model(client: httpx.Client, sid: str, model: FakeAnthropic) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    model.default = text("ok")
    turn(client, sid, "structured please", outputFormat={"type": "json_schema", "schema": schema})
    request = last_request(model, "structured please")
    assert "answer" in json.dumps(request.get("tools", [])) + json.dumps(request.get("output_config", {}))


def test_allowed_tools_patch_reaches_the_model(client: httpx.Client, sid: str, model: FakeAnthropic) -> None:
    model.default = text("ok")
    assert client.patch(f"/api/sessions/{sid}/config", json={"disallowedTools": ["Bash"]}).status_code == 200
    turn(client, sid, "no bash for you")
    names = {t["name"] for t in last_request(model, "no bash for you")["tools"]}
    assert "Bash" not in names and "Read" in names
