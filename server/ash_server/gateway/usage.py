"""Token usage read from Messages API responses as they pass through the gateway, without holding them back.

A streamed response is split into SSE events as its bytes go by; only the few events that carry usage or start a
block (`message_start`, `message_delta`, `content_block_start`) are parsed as JSON, the rest are skipped by their
`event:` line. A non-streamed response is parsed once it is complete.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

# An SSE event larger than this (a huge text delta) cannot carry usage; it is skipped instead of buffered.
MAX_EVENT_BYTES = 1024 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024
_PARSED_EVENTS = frozenset({b"message_start", b"message_delta", b"content_block_start"})
_USAGE_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_creation_input_tokens": "cache_creation_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
}


@dataclass
class CallUsage:
    """What one model call used. Counts are the API's own."""

    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    tool_calls: int = 0
    seen: bool = False

    @property
    def tokens(self) -> int:
        """Every token the API reported for the call (what the gateway's token budgets count)."""
        return self.input_tokens + self.output_tokens + self.cache_creation_tokens + self.cache_read_tokens

    def metrics(self) -> list[tuple[str, float]]:
        """(event type, value) rows for the usage table: one `message` per call, and every non-zero count."""
        rows: list[tuple[str, float]] = [("message", 1)]
        for name in ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens", "tool_calls"):
            value = getattr(self, name)
            if value:
                rows.append(("tool_call" if name == "tool_calls" else name, value))
        return rows

    def timeline(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheCreationTokens": self.cache_creation_tokens,
            "cacheReadTokens": self.cache_read_tokens,
            "toolCalls": self.tool_calls,
        }

    def apply(self, usage: Any) -> None:
        """Take the counts an event reports. Later events (message_delta) carry cumulative values."""
        if not isinstance(usage, dict):
            return
        for api_name, ours in _USAGE_FIELDS.items():
            value = usage.get(api_name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(self, ours, value)
                self.seen = True

    def apply_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if isinstance(message.get("model"), str):
            self.model = message["model"]
        self.apply(message.get("usage"))
        content = message.get("content")
        if isinstance(content, list):
            self.tool_calls += sum(1 for b in content if isinstance(b, dict) and b.get("type") == "tool_use")


@dataclass
class UsageMeter:
    """Fed the response body chunk by chunk; `usage` holds what was seen so far (also after a cut-off stream)."""

    streaming: bool
    usage: CallUsage = field(default_factory=CallUsage)
    _buffer: bytearray = field(default_factory=bytearray)
    _skipping: bool = False
    _too_big: bool = False

    def feed(self, chunk: bytes) -> None:
        if not self.streaming:
            if len(self._buffer) + len(chunk) > MAX_JSON_BYTES:
                self._too_big = True
            elif not self._too_big:
                self._buffer += chunk
            return
        self._buffer += chunk
        while True:
            end, sep = _event_end(self._buffer)
            if end < 0:
                if len(self._buffer) > MAX_EVENT_BYTES:
                    # Keep only a possible partial separator; the rest of this event is skipped.
                    del self._buffer[:-3]
                    self._skipping = True
                return
            block = bytes(self._buffer[:end])
            del self._buffer[: end + sep]
            if self._skipping:
                self._skipping = False
                continue
            self._event(block)

    def finish(self) -> CallUsage:
        if not self.streaming and self._buffer and not self._too_big:
            with contextlib.suppress(ValueError):
                self.usage.apply_message(json.loads(self._buffer))
            self._buffer.clear()
        return self.usage

    def _event(self, block: bytes) -> None:
        name = b""
        data: list[bytes] = []
        for line in block.splitlines():
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
        if not data or (name and name not in _PARSED_EVENTS):
            return
        try:
            event = json.loads(b"\n".join(data))
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            self.usage.apply_message(event.get("message"))
        elif kind == "message_delta":
            self.usage.apply(event.get("usage"))
        elif kind == "content_block_start":
            block_json = event.get("content_block")
            if isinstance(block_json, dict) and block_json.get("type") in ("tool_use", "server_tool_use"):
                self.usage.tool_calls += 1


def _event_end(buffer: bytearray) -> tuple[int, int]:
    """Where the first complete SSE event ends and how long its separator is, or (-1, 0)."""
    best, size = -1, 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buffer.find(sep)
        if at >= 0 and (best < 0 or at < best):
            best, size = at, len(sep)
    return best, size
