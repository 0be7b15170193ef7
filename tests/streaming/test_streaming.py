"""Streaming that never loses a turn: ids, keepalive, re-attach, disconnects, interrupt, one turn at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.test_bad_input import assert_error
from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.server import REPO, AshServer
from tests.support.sse import SseReader, read_all

pytestmark = pytest.mark.slow

SLOW = text("".join(f"w{i} " for i in range(40)), chunks=40, delay=0.1)  # ~4 s of deltas


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    env = {"ASH_SSE_KEEPALIVE_MS": "300", "ASH_SSE_WRITE_TIMEOUT_MS": "3000"}
    server = AshServer(fake_model.url, env=env).start()
    with server.client() as client:
        path = str(REPO / "examples" / "hello-agent")
        assert client.post("/api/agents", json={"name": "streamer", "path": path}).status_code == 201
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def new_session(client: httpx.Client) -> str:
    response = client.post("/api/sessions", json={"agent": "streamer"})
    assert response.status_code == 201, response.text
    return str(response.json()["session"]["id"])


def turn(client: httpx.Client, sid: str, prompt: str, **body: object) -> SseReader:
    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": prompt, **body}) as response:
        assert response.status_code == 200, response.read()
        return read_all(response)


def wait_idle(client: httpx.Client, sid: str) -> None:
    """Until the session's latest turn has ended (a re-attach without Last-Event-ID then ends with done)."""
    with client.stream("GET", f"/api/sessions/{sid}/stream") as response:
        assert read_all(response).frames[-1].event == "done"


def test_frames_have_ids_headers_and_retry(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("ids please", text("one two three", chunks=3))
    sid = new_session(client)
    with client.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": "ids please", "includePartialMessages": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        reader = read_all(response)
    assert reader.retry == 3000
    ids = [f.id for f in reader.frames]
    assert all(i is not None for i in ids) and ids == sorted(ids) and len(set(ids)) == len(ids)
    assert reader.frames[0].event == "session_start" and reader.frames[-1].event == "done"
    # A second turn continues the same sequence.
    second = turn(client, sid, "ids please")
    assert second.frames[0].id is not None and second.frames[0].id > ids[-1]


def test_keepalive_comments_on_a_quiet_stream(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("take your time", text("slow and steady", chunks=2, delay=1.5))
    sid = new_session(client)
    reader = turn(client, sid, "take your time")
    assert "keepalive" in reader.comments
    assert reader.frames[-1].event == "done"


def test_disconnect_and_reattach_sees_every_event_exactly_once(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("long story", SLOW)
    sid = new_session(client)
    seen = []
    with client.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": "long story", "includePartialMessages": True}
    ) as response:
        reader = SseReader()
        for frame in reader.feed(response.iter_lines()):
            seen.append(frame)
            if sum(1 for f in seen if f.event == "text_delta") == 5:
                break  # the client loses its connection mid-turn
    last_id = seen[-1].id
    headers = {"Last-Event-ID": str(last_id)}
    with client.stream(
        "GET", f"/api/sessions/{sid}/stream", params={"includePartialMessages": "true"}, headers=headers
    ) as response:
        rest = read_all(response).frames
    assert rest[-1].event == "done"
    combined = seen + rest
    ids = [f.id for f in combined]
    assert ids == sorted(set(ids))  # in order, none twice
    # Nothing was missed: the whole turn, replayed from the store afterwards, is exactly what the client has.
    first_id = seen[0].id
    assert first_id is not None
    with client.stream(
        "GET",
        f"/api/sessions/{sid}/stream",
        params={"includePartialMessages": "true", "lastEventId": str(first_id - 1)},
    ) as response:
        replay = read_all(response).frames
    assert [(f.id, f.event, f.data) for f in replay] == [(f.id, f.event, f.data) for f in combined]
    deltas = "".join(f.data["delta"] for f in combined if f.event == "text_delta")
    assert deltas == SLOW.text


def test_client_disconnect_does_not_lose_the_turn(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("keep going without me", text("all of it, stored", chunks=10, delay=0.1))
    sid = new_session(client)
    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "keep going without me"}) as r:
        next(r.iter_lines())  # gone after the first line
    wait_idle(client, sid)
    messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
    results = [m for m in messages if '"type":"result"' in m["content"]]
    assert len(results) == 1 and "all of it, stored" in results[0]["content"]


def test_disconnect_with_interrupt_policy_stops_the_turn(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("stop when I leave", SLOW)
    sid = new_session(client)
    with client.stream(
        "POST",
        f"/api/sessions/{sid}/messages",
        params={"onDisconnect": "interrupt"},
        json={"content": "stop when I leave", "includePartialMessages": True},
    ) as response:
        reader = SseReader()
        for frame in reader.feed(response.iter_lines()):
            if frame.event == "text_delta":
                break
    with client.stream("GET", f"/api/sessions/{sid}/stream") as response:
        frames = read_all(response).frames
    assert [f.event for f in frames][-2:] == ["error", "done"]
    assert "interrupted" in frames[-2].data["error"]
    model_calls = [e for e in model.request_log if e.get("messages_endpoint") and "stop when I leave" in str(e["body"])]
    assert model_calls and model_calls[-1]["completed"] is False  # the model stream was cut, not run to the end


def test_interrupt_endpoint_then_the_next_message_works(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("ramble on", SLOW)
    model.on("short answer", text("Short."))
    sid = new_session(client)
    with client.stream(
        "POST", f"/api/sessions/{sid}/messages", json={"content": "ramble on", "includePartialMessages": True}
    ) as response:
        reader = SseReader()
        interrupted_at = None
        for frame in reader.feed(response.iter_lines()):
            if frame.event == "text_delta" and interrupted_at is None:
                interrupted_at = time.monotonic()
                answer = client.post(f"/api/sessions/{sid}/interrupt").json()
                assert answer["interrupted"] is True and answer["turnId"]
    events = [f.event for f in reader.frames]
    assert events[-2:] == ["error", "done"] and "interrupted" in reader.frames[-2].data["error"]
    deltas = "".join(f.data["delta"] for f in reader.frames if f.event == "text_delta")
    assert deltas != SLOW.text  # it stopped before the end of the reply
    # Nothing was running any more: interrupting again is a harmless no-op.
    assert client.post(f"/api/sessions/{sid}/interrupt").json() == {"interrupted": False, "turnId": None}
    after = turn(client, sid, "short answer", includePartialMessages=True)
    assert [f.data["result"] for f in after.frames if f.event == "turn_complete"] == ["Short."]
    # No event of the aborted turn leaks into the next one.
    assert not any(f.event == "text_delta" and f.data["delta"].startswith("w") for f in after.frames)


def test_second_message_while_a_turn_runs_is_409(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("first of two", text("first done", chunks=10, delay=0.1))
    model.on("second of two", text("second done"))
    sid = new_session(client)
    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "first of two"}) as response:
        lines = response.iter_lines()
        next(lines)
        conflict = client.post(f"/api/sessions/{sid}/messages", json={"content": "second of two"})
        assert_error(conflict, 409, "already running")
        first = SseReader()
        for _ in first.feed(lines):
            pass
    assert [f.data["result"] for f in first.frames if f.event == "turn_complete"] == ["first done"]
    second = turn(client, sid, "second of two")
    assert [f.data["result"] for f in second.frames if f.event == "turn_complete"] == ["second done"]
    user_messages = [m for m in client.get(f"/api/sessions/{sid}/messages").json()["messages"] if m["role"] == "user"]
    prompts = [m["content"] for m in user_messages if '"content":"' in m["content"]]
    assert sum("second of two" in p for p in prompts) == 1  # the refused message was not stored


def test_reattach_without_a_running_turn_replays_the_last_one_and_ends(
    client: httpx.Client, model: FakeAnthropic
) -> None:
    model.on("replay me", text("replayed"))
    sid = new_session(client)
    original = turn(client, sid, "replay me")
    with client.stream("GET", f"/api/sessions/{sid}/stream") as response:
        replay = read_all(response)
    assert [(f.id, f.event) for f in replay.frames] == [(f.id, f.event) for f in original.frames]


def test_multimodal_content_reaches_the_model(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("describe the picture", text("A red dot."))
    sid = new_session(client)
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    content = [
        {"type": "text", "text": "describe the picture"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
    ]
    result = turn(client, sid, content)  # type: ignore[arg-type]
    assert [f.data["result"] for f in result.frames if f.event == "turn_complete"] == ["A red dot."]
    request = model.requests_with_prompt("describe the picture")[-1]
    blocks = [b for m in request["messages"] if m["role"] == "user" for b in m["content"] if isinstance(b, dict)]
    images = [b for b in blocks if b.get("type") == "image"]
    assert images and images[0]["source"]["data"] == png


def test_oversized_and_malformed_content(client: httpx.Client) -> None:
    sid = new_session(client)
    url = f"/api/sessions/{sid}/messages"
    big = "A" * (21 * 1024 * 1024 // 3 * 4)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big}}
    assert_error(client.post(url, json={"content": [image]}), 413, "attachments")
    assert_error(client.post(url, json={"content": "x" * 500_001}), 413)
    bad_image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@@@"}}
    assert_error(client.post(url, json={"content": [bad_image]}), 400, "base64")
    assert_error(client.post(url, json={"content": [{"type": "text"}]}), 400)
    assert_error(client.post(url, json={"content": [{"type": "text", "text": "x"}] * 21}), 400)
    huge = b'{"content": "' + b"x" * (65 * 1024 * 1024) + b'"}'
    response = client.post(url, content=huge, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "request body")


def test_tool_results_stream_as_events(client: httpx.Client, model: FakeAnthropic) -> None:
    model.on("make a file", [tool_use("Bash", {"command": "echo made > made.txt && cat made.txt"}), text("Made it.")])
    sid = new_session(client)
    reader = turn(client, sid, "make a file")
    tool_uses = [f.data for f in reader.frames if f.event == "tool_use"]
    results = [f.data for f in reader.frames if f.event == "tool_result"]
    assert tool_uses[0]["name"] == "Bash" and results[0]["tool_use_id"] == tool_uses[0]["id"]
    assert "made" in str(results[0]["content"]) and results[0]["is_error"] is False
