"""From stored rows to what the pages show: a session's conversation, its timeline, totals and runner rows.

Everything here is plain text for the templates to escape: agent output is hostile and never becomes markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..states import SessionStatus
from ..store.models import Message, SessionEvent

STATUSES = tuple(SessionStatus)
# Long texts are cut for the page; the API (`/api/sessions/{id}/messages`) has them whole.
TEXT_LIMIT = 20_000
DETAIL_LIMIT = 4_000
SUMMARY_LIMIT = 240


@dataclass(frozen=True, slots=True)
class Block:
    """One visible piece of a message: `kind` is prompt, text, thinking, tool_use, tool_result, system, result,
    error or other."""

    kind: str
    text: str = ""
    title: str = ""
    detail: str = ""
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class MessageView:
    sequence: int
    created_at: datetime
    role: str
    blocks: list[Block]

    @property
    def speaker(self) -> str:
        """Who the page says it is from: user, agent, tool (results) or system (init, turn results)."""
        kinds = {b.kind for b in self.blocks}
        if "prompt" in kinds:
            return "user"
        if kinds <= {"tool_result"}:
            return "tool"
        if kinds <= {"system", "result", "other"}:
            return "system"
        return "agent"


@dataclass(frozen=True, slots=True)
class EventView:
    sequence: int
    created_at: datetime
    type: str
    summary: str


@dataclass(frozen=True, slots=True)
class RunnerRow:
    """One server that runs sandboxes, as the overview lists it."""

    id: str
    role: str
    address: str
    status: str
    sandboxes: int
    capacity: int
    running: int
    detail: str = ""


@dataclass(slots=True)
class SessionCounts:
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    by_agent: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str, int]]) -> SessionCounts:
        """From (agent, status, count) rows (Store.session_counts)."""
        counts = cls()
        for agent, status, n in rows:
            counts.by_status[status] = counts.by_status.get(status, 0) + n
            per_agent = counts.by_agent.setdefault(agent, {})
            per_agent[status] = per_agent.get(status, 0) + n
        return counts

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def of_agent(self, agent: str) -> tuple[int, int]:
        """(all sessions, live ones: starting or active) of an agent."""
        per_agent = self.by_agent.get(agent, {})
        return sum(per_agent.values()), per_agent.get(SessionStatus.ACTIVE, 0) + per_agent.get(
            SessionStatus.STARTING, 0
        )


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def pretty(value: Any, limit: int = DETAIL_LIMIT) -> str:
    return cut(value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False), limit)


def compact(value: Any, limit: int = SUMMARY_LIMIT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    return cut(" ".join(text.split()), limit)


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _tool_result_text(content: Any) -> str:
    if isinstance(content, list):
        blocks = _content_blocks(content)
        return "\n".join(str(b.get("text", "")) if b.get("type") == "text" else f"[{b.get('type')}]" for b in blocks)
    return "" if content is None else content if isinstance(content, str) else json.dumps(content)


def _user_blocks(content: Any) -> list[Block]:
    blocks = []
    for b in _content_blocks(content):
        kind = b.get("type")
        if kind == "text":
            blocks.append(Block("prompt", cut(str(b.get("text", "")), TEXT_LIMIT)))
        elif kind == "tool_result":
            text = _tool_result_text(b.get("content"))
            is_error = bool(b.get("is_error"))
            blocks.append(Block("tool_result", cut(text, DETAIL_LIMIT), title="tool result", is_error=is_error))
        else:
            source = b.get("source")
            media = source.get("media_type", "") if isinstance(source, dict) else ""
            blocks.append(Block("prompt", f"[{kind}{': ' + str(media) if media else ''}]"))
    return blocks


def _assistant_blocks(message: dict[str, Any]) -> list[Block]:
    inner = message.get("message")
    blocks = []
    for b in _content_blocks(inner.get("content") if isinstance(inner, dict) else None):
        kind = b.get("type")
        if kind == "text":
            blocks.append(Block("text", cut(str(b.get("text", "")), TEXT_LIMIT)))
        elif kind == "thinking":
            blocks.append(Block("thinking", cut(str(b.get("thinking", "")), TEXT_LIMIT), title="thinking"))
        elif kind == "tool_use":
            blocks.append(Block("tool_use", title=str(b.get("name", "tool")), detail=pretty(b.get("input"))))
    if message.get("error"):
        blocks.append(Block("error", str(message["error"]), title="error", is_error=True))
    return blocks


def _system_blocks(message: dict[str, Any]) -> list[Block]:
    subtype = str(message.get("subtype", ""))
    if subtype == "init":
        tools = message.get("tools")
        text = f"model {message.get('model', '?')}, {len(tools) if isinstance(tools, list) else 0} tools"
        return [Block("system", text, title="session init")]
    if subtype == "status":
        return []  # "requesting" and the like: noise on a page
    return [Block("system", title=subtype or "system")]


def _result_blocks(message: dict[str, Any]) -> list[Block]:
    parts = [f"{message.get('num_turns', '?')} turn(s)"]
    if isinstance(message.get("duration_ms"), int | float):
        parts.append(f"{message['duration_ms'] / 1000:.1f} s")
    if isinstance(message.get("total_cost_usd"), int | float):
        parts.append(f"${message['total_cost_usd']:.4f}")
    failed = bool(message.get("is_error"))
    title = f"turn failed ({message.get('subtype', 'error')})" if failed else "turn complete"
    return [Block("result", ", ".join(parts), title=title, is_error=failed)]


def message_blocks(raw: str) -> list[Block]:
    """The visible blocks of one stored message (its content is the SDK message, or the user's, as JSON)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return [Block("other", cut(raw, DETAIL_LIMIT), title="unreadable message")]
    if not isinstance(message, dict):
        return [Block("other", compact(message), title="message")]
    kind = message.get("type")
    if kind == "user":
        inner = message.get("message")
        return _user_blocks(inner.get("content") if isinstance(inner, dict) else message.get("content"))
    if kind == "assistant":
        return _assistant_blocks(message)
    if kind == "system":
        return _system_blocks(message)
    if kind == "result":
        return _result_blocks(message)
    return [Block("other", title=str(kind or "message"))]


def conversation(messages: Sequence[Message]) -> list[MessageView]:
    views = []
    for m in messages:
        blocks = message_blocks(m.content)
        if blocks:
            views.append(MessageView(m.sequence, m.created_at, m.role, blocks))
    return views


def event_summary(kind: str, raw: str | None) -> str:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return compact(raw or "")
    if not isinstance(data, dict):
        return compact(data)
    if kind in ("text", "reasoning"):
        return compact(data.get("text", ""))
    if kind == "tool_start":
        return compact(f"{data.get('name')} {compact(data.get('input'))}")
    if kind == "tool_result":
        return ("error: " if data.get("is_error") else "") + compact(_tool_result_text(data.get("content")))
    if kind == "lifecycle" and data.get("action") == "model_usage":
        return "model usage " + (
            f"{data.get('model')}: {data.get('inputTokens', 0)} in, {data.get('outputTokens', 0)} out, "
            f"{data.get('cacheReadTokens', 0)} cache read"
        )
    if kind == "turn_complete":
        cost = data.get("totalCostUsd")
        money = f", ${cost:.4f}" if isinstance(cost, int | float) else ""
        return f"{data.get('numTurns')} turn(s){money}" + (" (error)" if data.get("isError") else "")
    if kind == "error":
        return compact(data.get("error", ""))
    if kind == "lifecycle":
        action = data.pop("action", "")
        return compact(f"{action} " + ", ".join(f"{k} {compact(v, 60)}" for k, v in data.items()))
    return compact(data)


def timeline(events: Sequence[SessionEvent]) -> list[EventView]:
    return [EventView(e.sequence, e.created_at, e.type, event_summary(e.type, e.data)) for e in events]
