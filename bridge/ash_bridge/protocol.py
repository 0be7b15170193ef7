"""The wire protocol between the server and the bridge: newline-delimited JSON over a Unix socket.

This module is the only part of the bridge the server imports, so it depends on the standard library alone.

Commands go server → bridge, events go bridge → server. Every command carries a request id (``id``) and every
event answering it carries the same id, so events of an aborted turn can never be mistaken for the next turn's.

    {"cmd": "query", "id": "r1", "prompt": "hi", "includePartialMessages": true, "options": {...}}
    {"cmd": "interrupt", "id": "r1"}
    {"cmd": "listen", "id": "l1"}
    {"cmd": "shutdown", "id": "s1"}

    {"event": "ready", "id": "", "pid": 42}
    {"event": "message", "id": "r1", "message": {...the SDK message, unchanged...}}
    {"event": "error", "id": "r1", "error": "...", "code": "sdk_error"}
    {"event": "done", "id": "r1", "sdkSessionId": "..."}
    {"event": "background", "id": "l1", "message": {...the SDK message, unchanged...}}

A query's events end with its `done`, after the SDK's `result` that answers that query. The CLI also runs turns of
its own (when a background task ends it tells the model, in a turn nobody sent): their SDK messages are not any
query's, and go as `background` events under the id of the server's `listen` request, which never gets a `done`
(the bridge drops them while nobody listens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

# Frames are capped so a corrupt or hostile peer cannot make the other side buffer without bound. A single SDK
# message can carry a large tool result, hence the generous cap.
MAX_FRAME_BYTES = 32 * 1024 * 1024

CommandName = Literal["query", "interrupt", "listen", "shutdown"]
EventName = Literal["ready", "message", "error", "done", "background"]
ErrorCode = Literal["sdk_error", "interrupted", "busy", "bad_command", "cli_exited", "limit_exceeded"]

COMMANDS: frozenset[str] = frozenset({"query", "interrupt", "listen", "shutdown"})
EVENTS: frozenset[str] = frozenset({"ready", "message", "error", "done", "background"})


class ProtocolError(Exception):
    """A frame that is not valid protocol. Carries the offending frame (truncated) for diagnostics."""

    def __init__(self, reason: str, frame: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame = frame[:200]


@dataclass(frozen=True, slots=True)
class Command:
    cmd: CommandName
    id: str
    prompt: str | list[dict[str, Any]] | None = None
    include_partial_messages: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cmd": self.cmd, "id": self.id}
        if self.cmd == "query":
            out["prompt"] = self.prompt
            out["includePartialMessages"] = self.include_partial_messages
            out["options"] = self.options
        return out


@dataclass(frozen=True, slots=True)
class Event:
    event: EventName
    id: str
    message: dict[str, Any] | None = None
    error: str | None = None
    code: ErrorCode | None = None
    sdk_session_id: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event, "id": self.id}
        if self.message is not None:
            out["message"] = self.message
        if self.error is not None:
            out["error"] = self.error
        if self.code is not None:
            out["code"] = self.code
        if self.sdk_session_id is not None:
            out["sdkSessionId"] = self.sdk_session_id
        if self.pid is not None:
            out["pid"] = self.pid
        return out


def encode(frame: Command | Event) -> bytes:
    data = json.dumps(frame.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) >= MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME_BYTES} byte cap")
    return data + b"\n"


# How the exec helper (enter.py, which runs as source and imports nothing) says the sandbox has no process to join.
EXEC_NOT_RUNNING = 125
EXEC_NOT_RUNNING_MESSAGE = "the sandbox has no process inside its namespaces (is it still starting or stopping?)"

# Reads one JSON document; the server passes a faster one than the standard library's.
Loads = Callable[[bytes], Any]


def _load(line: bytes, loads: Loads = json.loads) -> dict[str, Any]:
    if len(line) > MAX_FRAME_BYTES:
        raise ProtocolError("frame exceeds the size cap", line)
    try:
        obj = loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}", line) from exc
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object", line)
    if not isinstance(obj.get("id", ""), str):
        raise ProtocolError("frame id is not a string", line)
    return obj


def _kind(
    line: bytes, key: str, known: frozenset[str], what: str, loads: Loads = json.loads
) -> tuple[dict[str, Any], Any]:
    """The frame and its kind (`cmd` of a command, `event` of an event), which must be one of `known`."""
    obj = _load(line, loads)
    kind = obj.get(key)
    if kind not in known:
        raise ProtocolError(f"unknown {what} {kind!r}", line)
    return obj, kind


def decode_command(line: bytes) -> Command:
    obj, cmd = _kind(line, "cmd", COMMANDS, "command")
    prompt = obj.get("prompt")
    if cmd == "query" and not isinstance(prompt, (str, list)):
        raise ProtocolError("query needs a prompt (string or list of content blocks)", line)
    options = obj.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ProtocolError("options must be an object", line)
    return Command(
        cmd=cmd,
        id=obj.get("id", ""),
        prompt=prompt,
        include_partial_messages=bool(obj.get("includePartialMessages", False)),
        options=options,
    )


def decode_event(line: bytes, loads: Loads = json.loads) -> Event:
    obj, name = _kind(line, "event", EVENTS, "event", loads)
    message = obj.get("message")
    if name in ("message", "background") and not isinstance(message, dict):
        raise ProtocolError(f"{name} event without a message object", line)
    return Event(
        event=name,
        id=obj.get("id", ""),
        message=message,
        error=obj.get("error"),
        code=obj.get("code"),
        sdk_session_id=obj.get("sdkSessionId"),
        pid=obj.get("pid"),
    )


# -- SDK options ----------------------------------------------------------------------------------------------
# The one list of the SDK options Ash carries, by their wire names. The API's request bodies, the session service
# (which stores the session's and merges a message's) and the bridge driver (which builds the SDK client from them)
# all take their names from here; tests/bridge/test_options_contract.py fails when one of them is missing a field.


class SessionSdkOptions(TypedDict, total=False):
    """Options a session is created with (and may patch): they shape its SDK client."""

    model: str
    systemPrompt: str
    permissionMode: str
    allowedTools: list[str]
    disallowedTools: list[str]
    mcpServers: dict[str, Any]
    betas: list[str]
    subagents: dict[str, Any]
    initialAgent: str


class TurnSdkOptions(TypedDict, total=False):
    """Options one message may carry; a later message without them returns to the session's."""

    model: str
    maxTurns: int
    maxBudgetUsd: float
    effort: str
    thinking: dict[str, Any]
    outputFormat: dict[str, Any]


class SdkOptions(SessionSdkOptions, TurnSdkOptions, total=False):
    """What the SDK client of one turn looks like: the session's options, then the message's."""


class BridgeConfig(SdkOptions, total=False):
    """The bridge's start-up configuration, written by the server as JSON to the file ASH_BRIDGE_CONFIG names."""

    cwd: str  # required: the workspace
    resume: str  # the SDK session id to continue
    settingSources: list[str]
    cliPath: str


SESSION_OPTIONS: tuple[str, ...] = tuple(SessionSdkOptions.__annotations__)
TURN_OPTIONS: tuple[str, ...] = tuple(TurnSdkOptions.__annotations__)
SDK_OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(SESSION_OPTIONS + TURN_OPTIONS))
# Fixed when the CLI starts: changing one reconnects the SDK client (resuming the same conversation). The model is
# not among them: it changes with a control request on the live client.
CONNECTION_OPTIONS: tuple[str, ...] = tuple(k for k in SDK_OPTIONS if k != "model")


# Where a stdio MCP server's stderr is kept, under the sandbox's HOME (the bridge writes, the server reads the tail
# when the CLI reports the server failed).
MCP_LOG_DIR = ".ash/mcp"


def mcp_log_name(name: str) -> str:
    """The file name (without `.log`) of an MCP server's stderr: its name with anything but [A-Za-z0-9._-] as _."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)[:100].lstrip(".") or "_"
