"""A conversation on the terminal: a live turn from its SSE events, and stored history from its SDK messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.text import Text

__all__ = ["TurnPrinter", "describe_tool", "print_history_message", "summarize_result"]

# The argument that says the most about a call of each built-in tool.
_MAIN_ARGUMENT = {
    "Bash": "command",
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
    "Glob": "pattern",
    "Grep": "pattern",
    "WebFetch": "url",
    "WebSearch": "query",
    "Task": "description",
    "Agent": "description",
    "Skill": "skill",
}
MAX_WIDTH = 100
# `error` events that do not end the turn (server/ash_server/sessions/mcp_failures.py).
WARNING_CODES = frozenset({"mcp_server_failed"})


def _one_line(text: str, width: int = MAX_WIDTH) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def describe_tool(name: str, tool_input: object) -> str:
    """`Bash(echo hi > out.txt)`: the tool and its main argument, on one line."""
    arg = ""
    if isinstance(tool_input, Mapping):
        key = _MAIN_ARGUMENT.get(name)
        value = tool_input.get(key) if key else None
        if not isinstance(value, str):
            value = next((v for v in tool_input.values() if isinstance(v, str)), None)
        arg = value if isinstance(value, str) else json.dumps(tool_input, ensure_ascii=False)
    elif tool_input is not None:
        arg = json.dumps(tool_input, ensure_ascii=False)
    return f"{name}({_one_line(arg)})"


def _result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text", "") for b in content if isinstance(b, Mapping) and b.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def summarize_result(content: object) -> str:
    """The first line of a tool result and how many lines follow."""
    lines = [line for line in _result_text(content).splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    more = f" … +{len(lines) - 1} lines" if len(lines) > 1 else ""
    return _one_line(lines[0]) + more


class TurnPrinter:
    """Prints a turn's events as they arrive: text streamed and flushed, tools compact and dim, errors in red."""

    def __init__(self, out: Console, err: Console) -> None:
        self._out = out
        self._err = err
        self._at_line_start = True
        self._text_since_message = False  # deltas printed since the last full assistant message
        self._printed_text = False
        self.failed = False
        self.session_id: str | None = None

    def handle(self, event: str, data: Any) -> None:
        payload: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if event == "text_delta":
            self._text(str(payload.get("delta", "")))
            self._text_since_message = True
        elif event in ("tool_use", "tool_result"):
            self._line(tool_line(event, payload))
        elif event == "error" and payload.get("code") in WARNING_CODES:
            # The turn goes on without that server's tools: said loudly, but not the turn's failure.
            self._break_line()
            self._err.print(Text("Warning: ", style="bold yellow") + Text(str(payload.get("error")), style="yellow"))
        elif event == "error":
            self._break_line()
            self._err.print(Text("Error: ", style="bold red") + Text(str(payload.get("error", data)), style="red"))
            self.failed = True
        elif event == "message":
            self._full_message(payload)
        elif event == "turn_complete":
            result = payload.get("result")
            if not self._printed_text and isinstance(result, str) and result:
                self._text(result)
        elif event in ("session_start", "done"):
            session_id = payload.get("sessionId")
            self.session_id = session_id if isinstance(session_id, str) else self.session_id

    def finish(self) -> None:
        self._break_line()

    def _full_message(self, message: Mapping[str, Any]) -> None:
        """Without partial messages (or from a server that sends none), print the assistant's text once, whole."""
        if message.get("type") != "assistant":
            return
        if not self._text_since_message:
            for block in _blocks(message):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    self._text(block["text"])
        self._text_since_message = False

    def _text(self, text: str) -> None:
        if not text:
            return
        # Raw writes, not Rich: deltas arrive mid-word and must appear as-is, unwrapped, at once.
        stream = self._out.file
        stream.write(text)
        stream.flush()
        self._at_line_start = text.endswith("\n")
        self._printed_text = True

    def _break_line(self) -> None:
        if not self._at_line_start:
            self._out.file.write("\n")
            self._out.file.flush()
            self._at_line_start = True

    def _line(self, text: Text) -> None:
        self._break_line()
        self._out.print(text)


def _content(message: Mapping[str, Any]) -> object:
    """SDK messages nest it (`{"type", "message": {"content"}}`); the user's own prompt is stored flat."""
    inner = message.get("message")
    return inner.get("content") if isinstance(inner, Mapping) else message.get("content")


def _blocks(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = _content(message)
    return [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []


def print_history_message(console: Console, role: str, raw: str) -> None:
    """One stored message (an SDK message as a JSON string), as a transcript line or two."""
    try:
        message = json.loads(raw)
    except ValueError:
        console.print(Text(f"{role}: ", style="bold") + Text(raw))
        return
    if not isinstance(message, Mapping):
        console.print(Text(f"{role}: ", style="bold") + Text(str(message)))
        return
    kind = message.get("type")
    if kind in ("assistant", "user"):
        content = _content(message)
        if isinstance(content, str):
            console.print(Text(f"{kind}: ", style="bold") + Text(content))
        for block in _blocks(message):
            btype = block.get("type")
            if btype == "text":
                console.print(Text(f"{kind}: ", style="bold") + Text(str(block.get("text", ""))))
            elif btype in ("tool_use", "tool_result"):
                console.print(tool_line(btype, block))
    elif kind == "result":
        turns = message.get("num_turns")
        cost = message.get("total_cost_usd")
        detail = f"{turns} turn(s)" + (f", ${cost:.4f}" if isinstance(cost, int | float) else "")
        console.print(Text(f"— {message.get('subtype', 'result')} ({detail})", style="dim"))
    elif kind == "system":
        return  # the CLI's own bookkeeping (init, status), not part of the conversation
    else:
        console.print(Text(f"— {kind or role}", style="dim"))


def tool_line(kind: str, block: Mapping[str, Any]) -> Text:
    """One line for a tool call (`tool_use`: what it does) or its answer (`tool_result`: what came back)."""
    if kind == "tool_use":
        return Text("⏺ " + describe_tool(str(block.get("name", "?")), block.get("input")), style="dim")
    return Text("  ⎿  " + summarize_result(block.get("content")), style="red" if block.get("is_error") else "dim")
