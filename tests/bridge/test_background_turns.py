"""Turns the CLI runs on its own: after a Bash call with `run_in_background`, the CLI answers the task's completion
with a turn nobody sent. Every message's reply must still answer that message, and the CLI's own turn must reach the
session as events of its own (issue 18, item 3). The real bridge, SDK and Claude Code CLI against the fake model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text, tool_use
from tests.support.server import REPO, AshServer
from tests.support.sse import SseReader, turn
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

BACKGROUND_REPLY = "The background task has finished."
LATER = ("alpha", "bravo", "charlie")


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    server = AshServer(fake_model.url).start()
    with server.client() as client:
        path = str(REPO / "examples" / "hello-agent")
        assert client.post("/api/agents", json={"name": "backgrounder", "path": path}).status_code == 201
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def later(prompt: str) -> bool:
    """One of the LATER messages is the prompt's last line (an interrupted message before it shares its request)."""
    return prompt.rsplit("\n", 1)[-1] in LATER


def reply_of(reader: SseReader) -> str:
    """The turn's result text (its `turn_complete`); the stream must have ended with `done`."""
    assert reader.frames[-1].event == "done", [(f.event, f.data) for f in reader.frames[-5:]]
    results = [f.data["result"] for f in reader.frames if f.event == "turn_complete"]
    assert len(results) == 1, results
    return str(results[0])


def answered(reply: str) -> str:
    """The last user text of the model request an `echo()` reply describes: what that reply answered."""
    texts: list[str] = json.loads(reply)["user_texts"]
    return texts[-1]


def background_events(client: httpx.Client, sid: str) -> list[dict[str, Any]]:
    events = client.get(f"/api/sessions/{sid}/events", params={"limit": 1000}).json()["events"]
    datas = [json.loads(e["data"]) | {"type": e["type"]} for e in events if e["data"]]
    return [d for d in datas if d.get("background") is True]


def test_replies_answer_their_own_message_after_a_background_task(client: httpx.Client, model: FakeAnthropic) -> None:
    # The first message starts a background task; once it completes the CLI runs a turn of its own, which the fake
    # answers with BACKGROUND_REPLY (the third model call after the "start" prompt).
    background = {"command": "sleep 2; echo from-the-background", "run_in_background": True}
    model.on("start a background task", [tool_use("Bash", background), text("Started it."), text(BACKGROUND_REPLY)])
    model.on(later, echo())
    sid = client.post("/api/sessions", json={"agent": "backgrounder"}).json()["session"]["id"]

    assert reply_of(turn(client, sid, "start a background task")) == "Started it."
    # The CLI's own turn reaches the session while no message is being answered.
    wait_for(
        lambda: any(e["type"] == "turn_complete" for e in background_events(client, sid)),
        "the background turn's result in the session's events",
    )

    for word in LATER:
        reader = turn(client, sid, word)
        reply = reply_of(reader)
        assert answered(reply) == word, reply
        assert BACKGROUND_REPLY not in json.dumps([f.data for f in reader.frames])

    own = background_events(client, sid)
    assert [e["text"] for e in own if e["type"] == "text"] == [BACKGROUND_REPLY]
    assert [e["result"] for e in own if e["type"] == "turn_complete"] == [BACKGROUND_REPLY]
    # Stored as the session's history too, in order: the background turn's reply after the first turn's, before
    # the later messages.
    messages = client.get(f"/api/sessions/{sid}/messages", params={"limit": 1000}).json()["messages"]
    contents = [m["content"] for m in messages]
    first_reply = next(i for i, c in enumerate(contents) if '"result":"Started it."' in c)
    background_result = next(i for i, c in enumerate(contents) if f'"result":"{BACKGROUND_REPLY}"' in c)
    alpha = next(i for i, m in enumerate(messages) if m["role"] == "user" and '"alpha"' in m["content"])
    assert first_reply < background_result < alpha


# The CLI's own turn, streamed over ~3.6 s; words no id (hex) can contain, so a frame with one of them has its text.
SLOW_BACKGROUND = "".join(f"quiet{i} " for i in range(12))


def start_slow_background_turn(client: httpx.Client, model: FakeAnthropic, name: str) -> str:
    """A session whose CLI has just begun a turn of its own (the task's notification is stored) and streams it."""
    background = {"command": "sleep 1; echo done", "run_in_background": True}
    prompt = f"start a slow background task ({name})"
    model.on(prompt, [tool_use("Bash", background), text("Started it."), text(SLOW_BACKGROUND, chunks=12, delay=0.3)])
    model.on(later, echo())
    sid: str = client.post("/api/sessions", json={"agent": "backgrounder"}).json()["session"]["id"]
    assert reply_of(turn(client, sid, prompt)) == "Started it."

    def notified() -> bool:
        messages = client.get(f"/api/sessions/{sid}/messages", params={"limit": 1000}).json()["messages"]
        return any('"subtype":"task_notification"' in m["content"] for m in messages)

    wait_for(notified, "the background task's notification")
    return sid


def test_a_message_sent_while_the_cli_runs_its_own_turn_gets_its_own_reply(
    client: httpx.Client, model: FakeAnthropic
) -> None:
    sid = start_slow_background_turn(client, model, "overlap")
    reader = turn(client, sid, "alpha")
    assert answered(reply_of(reader)) == "alpha"
    assert "quiet11" not in json.dumps([f.data for f in reader.frames])  # the CLI's own turn stayed out of it
    wait_for(
        lambda: [e["result"] for e in background_events(client, sid) if e["type"] == "turn_complete"],
        "the background turn's result",
    )
    own = background_events(client, sid)
    assert [e["result"] for e in own if e["type"] == "turn_complete"] == [SLOW_BACKGROUND]


def test_interrupting_a_message_that_waits_behind_the_cli_s_own_turn_ends_it(
    client: httpx.Client, model: FakeAnthropic
) -> None:
    # Were "bravo" run to its end, its reply would take 5 s: long enough for a late interrupt to land in it.
    model.on(lambda prompt: prompt == "bravo", text("a reply to bravo, slowly", chunks=10, delay=0.5))
    sid = start_slow_background_turn(client, model, "interrupted")
    sandbox = client.get(f"/api/sessions/{sid}").json()["session"]["sandboxId"]
    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "bravo"}) as response:
        reader = SseReader()
        frames = reader.feed(response.iter_lines())
        assert next(frames).event == "session_start"
        assert client.post(f"/api/sessions/{sid}/interrupt").json()["interrupted"] is True
        rest = list(frames)
    assert rest[-1].event == "done"
    assert {"error": "turn interrupted"} in [f.data for f in rest if f.event == "error"]
    # The CLI ended "bravo" itself, interrupted once it started (it would otherwise have answered it in full).
    results = [f.data for f in rest if f.event == "message" and f.data.get("type") == "result"]
    assert [r["subtype"] for r in results] == ["error_during_execution"], results
    # The turn ended because the CLI did, not because the sandbox was stopped: the next message runs on it.
    assert answered(reply_of(turn(client, sid, "charlie"))) == "charlie"
    assert client.get(f"/api/sessions/{sid}").json()["session"]["sandboxId"] == sandbox
