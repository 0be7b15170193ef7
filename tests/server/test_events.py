"""SDK messages → SSE events and timeline events."""

from __future__ import annotations

import pytest

from ash_server.sessions.events import message_role, sse_events, timeline_events

ASSISTANT_TOOL = {
    "type": "assistant",
    "message": {
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        ]
    },
}
TOOL_RESULT = {
    "type": "user",
    "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt", "is_error": False}]},
}
RESULT = {"type": "result", "num_turns": 2, "result": "done", "is_error": False, "total_cost_usd": 0.1}
DELTA = {
    "type": "stream_event",
    "event": {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "He"}},
}
THINKING = {
    "type": "stream_event",
    "event": {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "hmm"}},
}


def test_granular_events_come_before_the_unchanged_message() -> None:
    assert sse_events(ASSISTANT_TOOL) == [
        ("tool_use", {"id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}, False),
        ("message", ASSISTANT_TOOL, False),
    ]
    assert sse_events(TOOL_RESULT) == [
        ("tool_result", {"tool_use_id": "toolu_1", "content": "a.txt", "is_error": False}, False),
        ("message", TOOL_RESULT, False),
    ]
    assert sse_events(RESULT)[0] == ("turn_complete", {"numTurns": 2, "result": "done"}, False)


def test_partial_messages_are_marked_partial() -> None:
    assert sse_events(DELTA) == [("text_delta", {"delta": "He"}, True), ("message", DELTA, True)]
    assert sse_events(THINKING)[0] == ("thinking_delta", {"delta": "hmm"}, True)


def test_api_errors_become_error_events() -> None:
    failed = {
        "type": "assistant",
        "error": "server_error",
        "message": {"content": [{"type": "text", "text": "API Error: 500 upstream exploded"}]},
    }
    said = {"error": "model server error: API Error: 500 upstream exploded", "code": "server_error"}
    assert ("error", said, False) in sse_events(failed)


@pytest.mark.parametrize(
    ("kind", "text", "said"),
    [
        ("authentication_failed", "Invalid API key", "model authentication failed: Invalid API key"),
        ("invalid_request", "API Error: 400 bad", "model rejected the request: API Error: 400 bad"),
        ("unknown", "API Error: 400 bad", "model rejected the request: API Error: 400 bad"),
        ("unknown", "API Error: 502 gateway", "model error (unknown): API Error: 502 gateway"),
        ("rate_limit", "", "model rate limit reached"),
    ],
)
def test_model_errors_are_said_in_words(kind: str, text: str, said: str) -> None:
    content = [{"type": "text", "text": text}] if text else []
    failed = {"type": "assistant", "error": kind, "message": {"content": content}}
    assert ("error", {"error": said, "code": kind}, False) in sse_events(failed)
    assert ("error", {"error": said}) in timeline_events(failed)


def test_timeline() -> None:
    assert [k for k, _ in timeline_events(ASSISTANT_TOOL)] == ["text", "tool_start"]
    assert [k for k, _ in timeline_events(TOOL_RESULT)] == ["tool_result"]
    assert timeline_events(RESULT)[0][1]["totalCostUsd"] == 0.1
    assert timeline_events(DELTA) == []


def test_roles() -> None:
    assert message_role(ASSISTANT_TOOL) == "assistant"
    assert message_role(TOOL_RESULT) == "user"
    assert message_role(RESULT) == "assistant"
    assert message_role(DELTA) is None
