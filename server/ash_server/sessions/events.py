"""From raw SDK messages to the wire's SSE events and to the persisted session timeline. Pure functions."""

from __future__ import annotations

from typing import Any

from .. import jsoncodec

# (event name, data, partial): partial events go only to clients that asked for partial messages.
SseEvent = tuple[str, dict[str, Any], bool]
TimelineEvent = tuple[str, dict[str, Any]]


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    inner = message.get("message")
    content = inner.get("content") if isinstance(inner, dict) else None
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def sse_events(message: dict[str, Any]) -> list[SseEvent]:
    """The granular events for one SDK message, followed by the message itself (unchanged)."""
    kind = message.get("type")
    out: list[SseEvent] = []
    if kind == "stream_event":
        event = message.get("event") or {}
        delta = event.get("delta") or {}
        if event.get("type") == "content_block_delta":
            if delta.get("type") == "text_delta":
                out.append(("text_delta", {"delta": delta.get("text", "")}, True))
            elif delta.get("type") == "thinking_delta":
                out.append(("thinking_delta", {"delta": delta.get("thinking", "")}, True))
        out.append(("message", message, True))
        return out
    if kind == "assistant":
        for block in _blocks(message):
            if block.get("type") == "tool_use":
                data = {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
                out.append(("tool_use", data, False))
        if message.get("error"):
            out.append(("error", {"error": _assistant_error_text(message), "code": message.get("error")}, False))
    elif kind == "user":
        for block in _blocks(message):
            if block.get("type") == "tool_result":
                out.append(("tool_result", _tool_result(block), False))
    elif kind == "result":
        out.append(("turn_complete", {"numTurns": message.get("num_turns"), "result": message.get("result")}, False))
    out.append(("message", message, False))
    return out


def _tool_result(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool_use_id": block.get("tool_use_id"),
        "content": block.get("content"),
        "is_error": bool(block.get("is_error", False)),
    }


# The SDK's kinds of failed model call (AssistantMessage.error), in words a person reads.
MODEL_ERROR_WORDS = {
    "authentication_failed": "model authentication failed",
    "billing_error": "model billing error",
    "rate_limit": "model rate limit reached",
    "invalid_request": "model rejected the request",
    "server_error": "model server error",
}


def _assistant_error_text(message: dict[str, Any]) -> str:
    texts = [b.get("text", "") for b in _blocks(message) if b.get("type") == "text"]
    detail = " ".join(t for t in texts if t)
    kind = str(message.get("error"))
    words = MODEL_ERROR_WORDS.get(kind)
    if words is None:
        # `unknown` covers every other HTTP error; a 4xx is still the model refusing this request.
        rejected = detail.startswith("API Error: 4")
        words = "model rejected the request" if rejected else f"model error ({kind})"
    return f"{words}: {detail}" if detail else words


def timeline_events(message: dict[str, Any]) -> list[TimelineEvent]:
    """What the session timeline (`GET /api/sessions/{id}/events`) records for one SDK message."""
    kind = message.get("type")
    out: list[TimelineEvent] = []
    if kind == "assistant":
        for block in _blocks(message):
            btype = block.get("type")
            if btype == "text":
                out.append(("text", {"text": block.get("text", "")}))
            elif btype == "thinking":
                out.append(("reasoning", {"text": block.get("thinking", "")}))
            elif btype == "tool_use":
                out.append(
                    (
                        "tool_start",
                        {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")},
                    )
                )
        if message.get("error"):
            out.append(("error", {"error": _assistant_error_text(message)}))
    elif kind == "user":
        for block in _blocks(message):
            if block.get("type") == "tool_result":
                out.append(("tool_result", _tool_result(block)))
    elif kind == "result":
        out.append(
            (
                "turn_complete",
                {
                    "numTurns": message.get("num_turns"),
                    "result": message.get("result"),
                    "isError": bool(message.get("is_error")),
                    "totalCostUsd": message.get("total_cost_usd"),
                    "usage": message.get("usage"),
                },
            )
        )
    return out


def message_role(message: dict[str, Any]) -> str | None:
    """The stored role of an SDK message, or None for messages that are not kept as history: partial deltas, and
    the CLI's echo of a local command the bridge ran (`Set model to ...` when a turn switches the model)."""
    kind = message.get("type")
    if kind == "stream_event" or _is_local_command_echo(message):
        return None
    return "user" if kind == "user" else "assistant"


def _is_local_command_echo(message: dict[str, Any]) -> bool:
    if message.get("type") != "user":
        return False
    inner = message.get("message")
    content = inner.get("content") if isinstance(inner, dict) else None
    if isinstance(content, list):
        content = "".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    return isinstance(content, str) and content.lstrip().startswith("<local-command-stdout>")


dumps = jsoncodec.dumps
