"""Tests of the fake Anthropic Messages API: direct HTTP checks, then the real Claude Code CLI against it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    Message,
    ResultMessage,
    StreamEvent,
    TextBlock,
    query,
)

from .anthropic_api import FakeAnthropic, api_error, echo, text, tool_use


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    _server.reset()
    _server.default = text("ok")
    yield _server
    _server.reset()


def _body(*prompts: str, stream: bool = False, **extra: Any) -> dict[str, Any]:
    """A request body shaped like the CLI's: reminder block, prompt, role:"system" entry."""
    messages: list[dict[str, Any]] = []
    for i, prompt in enumerate(prompts):
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if i == 0:
            content.insert(0, {"type": "text", "text": "<system-reminder>\nCLAUDE.md says hi\n</system-reminder>\n"})
        messages.append({"role": "user", "content": content})
        if i == 0:
            messages.append({"role": "system", "content": "# Environment\n..."})
        if i < len(prompts) - 1:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]})
    return {
        "model": "claude-test-model",
        "max_tokens": 1234,
        "system": [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}],
        "messages": messages,
        "stream": stream,
        **extra,
    }


def _parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for frame in raw.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :]
        events.append((data["type"], data))
    return events


# ----------------------------------------------------------------------------------------------------
# Direct HTTP tests (no CLI)
# ----------------------------------------------------------------------------------------------------


def test_prompt_extraction_and_reply_index() -> None:
    body = _body("first question", "second question")
    assert FakeAnthropic.prompt_of(body) == "second question"
    assert FakeAnthropic.user_texts(body) == ["first question", "second question"]
    assert FakeAnthropic.reply_index(body) == 0
    # A tool round trip: assistant tool_use, then a tool_result-only user message (plus a reminder).
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": "hm"}, {"type": "tool_use", "id": "t"}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "done"},
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            ],
        },
    ]
    assert FakeAnthropic.prompt_of(body) == "second question"
    assert FakeAnthropic.reply_index(body) == 1
    assert FakeAnthropic.prompt_of({"messages": []}) == ""
    assert FakeAnthropic.prompt_of({"messages": [{"role": "user", "content": "plain string"}]}) == "plain string"


def test_rule_selection(fake: FakeAnthropic) -> None:
    first, second = tool_use("Bash", {"command": "true"}), text("done")
    fake.on("write", [first, second])
    fake.on(lambda p: p.startswith("pred"), text("by predicate"))
    fake.on("write", text("never: first rule wins"))
    body = _body("please write it")
    assert fake.reply_for(body) is first
    body["messages"] += [{"role": "assistant", "content": []}, {"role": "user", "content": []}]
    assert fake.reply_for(body) is second
    body["messages"] += [{"role": "assistant", "content": []}, {"role": "user", "content": []}]
    assert fake.reply_for(body) is second  # past the end: the last text reply repeats
    fake.on("only tools", [tool_use("Bash", {"command": "true"})])
    past_end = _body("only tools")
    past_end["messages"] += [{"role": "assistant", "content": []}, {"role": "user", "content": []}]
    assert fake.reply_for(past_end) is fake.default
    assert fake.reply_for(_body("predicate matches")).text == "by predicate"
    assert fake.reply_for(_body("nothing matches")) is fake.default


async def test_stream_false_json_and_paths(fake: FakeAnthropic) -> None:
    fake.on("hi", text("Hello there, friend!"))
    fake.on("tool", tool_use("Bash", {"command": "ls"}, id="toolu_x", preamble="Sure."))
    fake.on("boom", api_error(529, "overloaded_error", "upstream exploded"))
    async with httpx.AsyncClient(base_url=fake.url) as client:
        r = await client.post("/v1/messages?beta=true", json=_body("hi"), headers={"x-api-key": "k1"})
        assert r.status_code == 200
        msg = r.json()
        assert msg["type"] == "message" and msg["role"] == "assistant"
        assert msg["model"] == "claude-test-model"
        assert msg["content"] == [{"type": "text", "text": "Hello there, friend!"}]
        assert msg["stop_reason"] == "end_turn" and msg["stop_sequence"] is None
        assert msg["usage"]["input_tokens"] == 2 * 10  # user message + role:"system" entry
        assert msg["usage"]["output_tokens"] == len("Hello there, friend!") // 4 + 1
        assert msg["id"].startswith("msg_")

        r = await client.post("/gw/sess-1/v1/messages", json=_body("tool"), headers={"x-api-key": "k2"})
        assert r.status_code == 200
        msg = r.json()
        assert msg["stop_reason"] == "tool_use"
        assert msg["content"] == [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {"command": "ls"}},
        ]

        r = await client.post("/v1/messages", json=_body("boom", stream=True))
        assert r.status_code == 529
        assert r.json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "upstream exploded"},
        }

        r = await client.post("/v1/messages", json=_body("echo me"), headers={"x-api-key": "k3"})
        assert r.json()["content"][0]["text"] == "ok"
        fake.default = echo()
        r = await client.post("/v1/messages", json=_body("earlier", "echo me"))
        summary = json.loads(r.json()["content"][0]["text"])
        assert summary == {
            "user_texts": ["earlier", "echo me"],
            "system": "sys one\nsys two",
            "model": "claude-test-model",
            "max_tokens": 1234,
            "n_messages": 4,
        }

        for method, path in [("GET", "/v1/models"), ("POST", "/v1/complete"), ("GET", "/v1/messages")]:
            r = await client.request(method, path)
            assert r.status_code == 404
            assert r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"

    log = fake.request_log
    assert [e["path"] for e in log[:2]] == ["/v1/messages", "/gw/sess-1/v1/messages"]
    assert log[0]["query"] == "beta=true"
    assert [e["headers"].get("x-api-key") for e in log[:3]] == ["k1", "k2", None]
    assert [e["status"] for e in log] == [200, 200, 529, 200, 200, 404, 404, 404]
    assert len(fake.requests) == 5  # 404s are logged but are not message requests
    assert len(fake.requests_with_prompt("echo me")) == 2


async def test_streaming_event_order_and_large_reply(fake: FakeAnthropic) -> None:
    big = "x" * 200_000
    fake.on("big", text(big, chunks=2000))
    fake.on("tool", tool_use("Write", {"file_path": "a.txt", "content": "hi"}, preamble="Writing."))
    async with httpx.AsyncClient(base_url=fake.url) as client:
        t0 = time.monotonic()
        r = await client.post("/v1/messages", json=_body("big", stream=True))
        assert time.monotonic() - t0 < 5
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _parse_sse(r.text)
        types = [t for t, _ in events]
        assert types[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
        assert types[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
        deltas = [d["delta"]["text"] for t, d in events if t == "content_block_delta"]
        assert len(deltas) == 2000 and "".join(deltas) == big
        assert events[0][1]["message"]["usage"]["input_tokens"] == 20
        assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
        assert events[-2][1]["usage"]["output_tokens"] == len(big) // 4 + 1

        r = await client.post("/v1/messages", json=_body("tool", stream=True))
        events = _parse_sse(r.text)
        assert [t for t, _ in events] == [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            *["content_block_delta"] * 4,
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert events[5][1]["content_block"]["input"] == {}
        partial = "".join(d["delta"]["partial_json"] for _, d in events[6:10])
        assert all(d["delta"]["type"] == "input_json_delta" for _, d in events[6:10])
        assert json.loads(partial) == {"file_path": "a.txt", "content": "hi"}
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert all(e["completed"] for e in fake.request_log)


async def test_delay_does_not_block_other_requests(fake: FakeAnthropic) -> None:
    fake.on("slow", text("abcdef", chunks=6, delay=0.2))
    async with httpx.AsyncClient(base_url=fake.url) as client:
        slow = asyncio.create_task(client.post("/v1/messages", json=_body("slow", stream=True)))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        quick = await client.post("/v1/messages", json=_body("quick", stream=True))
        assert time.monotonic() - t0 < 0.5
        assert not slow.done()
        assert [d["delta"]["text"] for t, d in _parse_sse(quick.text) if t == "content_block_delta"] == ["ok"]
        r = await slow
        assert [d["delta"]["text"] for t, d in _parse_sse(r.text) if t == "content_block_delta"] == list("abcdef")


def test_start_stop_frees_port_and_cuts_slow_streams() -> None:
    t0 = time.monotonic()
    fake = FakeAnthropic().start()
    assert time.monotonic() - t0 < 0.5
    port = fake.port
    fake.on("slow", text("a" * 100, chunks=100, delay=1.0))

    def slow_request() -> None:
        with (
            httpx.Client(base_url=fake.url) as client,
            client.stream("POST", "/v1/messages", json=_body("slow", stream=True)) as r,
        ):
            for _ in r.iter_bytes():
                pass

    import threading

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 2
    t.join(timeout=5)
    assert not t.is_alive()
    assert fake.request_log[0]["completed"] is False
    with pytest.raises(RuntimeError):
        _ = fake.url
    with socket.socket() as s:
        # The port is free again: no listener holds it. SO_REUSEADDR as any server sets it, so the connection the
        # stop cut (left in TIME_WAIT) does not count; a listener still bound would still fail this.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
    with FakeAnthropic() as again:
        assert httpx.post(f"{again.url}/v1/messages", json=_body("x")).json()["content"][0]["text"] == "ok"


# ----------------------------------------------------------------------------------------------------
# The real Claude Code CLI, through claude_agent_sdk
# ----------------------------------------------------------------------------------------------------


def _options(fake: FakeAnthropic, tmp_path: Path, partial: bool = False) -> ClaudeAgentOptions:
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    env = {
        "ANTHROPIC_BASE_URL": fake.url,
        "ANTHROPIC_API_KEY": "sk-test-fake",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "HOME": str(home),
        "IS_SANDBOX": "1",
    }
    return ClaudeAgentOptions(
        cwd=str(cwd),
        env=env,
        permission_mode="bypassPermissions",
        include_partial_messages=partial,
    )


def _texts(messages: list[Message]) -> list[str]:
    return [
        block.text
        for m in messages
        if isinstance(m, AssistantMessage)
        for block in m.content
        if isinstance(block, TextBlock)
    ]


def _result(messages: list[Message]) -> ResultMessage:
    results = [m for m in messages if isinstance(m, ResultMessage)]
    assert len(results) == 1, messages
    return results[0]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_text_reply_streams(fake: FakeAnthropic, tmp_path: Path) -> None:
    reply = "Hello there, friend! This reply arrives in several pieces."
    fake.on("hello", text(reply, chunks=4))
    messages = [m async for m in query(prompt="hello", options=_options(fake, tmp_path, partial=True))]

    deltas = [
        m.event["delta"]["text"]
        for m in messages
        if isinstance(m, StreamEvent)
        and m.event.get("type") == "content_block_delta"
        and m.event["delta"].get("type") == "text_delta"
    ]
    assert len(deltas) == 4
    assert "".join(deltas) == reply
    assert _texts(messages) == [reply]
    result = _result(messages)
    assert not result.is_error
    assert result.result == reply
    assert result.num_turns == 1
    assert result.usage is not None and result.usage["output_tokens"] == len(reply) // 4 + 1

    # What the CLI sent: one POST /v1/messages?beta=true per model call, with our key.
    assert len(fake.requests) == 1
    entry = fake.request_log[0]
    assert entry["path"] == "/v1/messages" and entry["query"] == "beta=true"
    assert entry["headers"]["x-api-key"] == "sk-test-fake"
    assert entry["body"]["stream"] is True
    assert fake.prompt_of(entry["body"]) == "hello"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_tool_use_turn(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.on(
        "write the file",
        [tool_use("Bash", {"command": "echo hi > out.txt"}, preamble="Let me do that."), text("I wrote it.")],
    )
    options = _options(fake, tmp_path)
    messages = [m async for m in query(prompt="please write the file", options=options)]

    assert (Path(str(options.cwd)) / "out.txt").read_text() == "hi\n"
    assert len(fake.requests) == 2
    follow_up = fake.requests[1]
    assert fake.prompt_of(follow_up) == "please write the file"
    assert fake.reply_index(follow_up) == 1
    last_user = [m for m in follow_up["messages"] if m["role"] == "user"][-1]
    results = [b for b in last_user["content"] if b.get("type") == "tool_result"]
    assert len(results) == 1 and results[0]["tool_use_id"].startswith("toolu_")
    assert _texts(messages) == ["Let me do that.", "I wrote it."]
    result = _result(messages)
    assert result.result == "I wrote it." and not result.is_error
    assert result.num_turns == 2


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_api_error_surfaces_quickly(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.on("boom", api_error(500, "api_error", "upstream exploded"))
    messages: list[Message] = []
    raised: Exception | None = None
    t0 = time.monotonic()
    try:
        async for m in query(prompt="boom", options=_options(fake, tmp_path)):
            messages.append(m)
    except Exception as exc:
        raised = exc
    elapsed = time.monotonic() - t0

    assert elapsed < 15
    assert len(fake.requests) == 1  # CLAUDE_CODE_MAX_RETRIES=0: no retry
    errors = [m.error for m in messages if isinstance(m, AssistantMessage) and m.error]
    results = [m for m in messages if isinstance(m, ResultMessage)]
    assert errors or any(r.is_error for r in results) or raised is not None
    assert results and results[0].is_error
    assert "upstream exploded" in (results[0].result or "") + " ".join(results[0].errors or []) + "".join(
        _texts(messages)
    )


@pytest.mark.slow
@pytest.mark.asyncio
async def test_cli_two_turn_conversation(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.on("my name is Ada", text("Nice to meet you, Ada."))
    fake.default = echo()
    async with ClaudeSDKClient(_options(fake, tmp_path)) as client:
        await client.query("Hi, my name is Ada")
        first = [m async for m in client.receive_response()]
        await client.query("What is my name?")
        second = [m async for m in client.receive_response()]

    assert _result(first).result == "Nice to meet you, Ada."
    summary = json.loads(_result(second).result or "")
    assert summary["user_texts"] == ["Hi, my name is Ada", "What is my name?"]
    assert summary["n_messages"] >= 3
    assert len(fake.requests) == 2
    assert fake.user_texts(fake.requests[1]) == ["Hi, my name is Ada", "What is my name?"]
    assert fake.prompt_of(fake.requests[1]) == "What is my name?"
    assert os.path.isdir(tmp_path / "claude" / "projects")  # the transcript lives under CLAUDE_CONFIG_DIR
