"""Drives one long-lived, connected ClaudeSDKClient for the whole life of the sandbox.

Keeping the client connected is what makes a session's second and later turns cheap: the CLI process start
(~0.6 s, ~0.9 CPU-s) is paid once per sandbox, not once per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from claude_agent_sdk import AgentDefinition, ClaudeAgentOptions, ClaudeSDKClient

from .protocol import CONNECTION_OPTIONS, MAX_FRAME_BYTES, MCP_LOG_DIR, BridgeConfig, mcp_log_name
from .routing import Destination, Query, Router


def connection_options(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in CONNECTION_OPTIONS}


def _agents(subagents: Any) -> dict[str, AgentDefinition] | None:
    if not isinstance(subagents, dict) or not subagents:
        return None
    fields = set(AgentDefinition.__dataclass_fields__)
    return {
        name: AgentDefinition(**{k: v for k, v in spec.items() if k in fields})
        for name, spec in subagents.items()
        if isinstance(spec, dict)
    }


def _mcp_servers(cwd: Path, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The agent's own `.mcp.json` servers, overlaid by the session's."""
    servers: dict[str, Any] = {}
    mcp_file = cwd / ".mcp.json"
    if mcp_file.is_file():
        try:
            loaded = json.loads(mcp_file.read_text())
        except ValueError as exc:
            print(f"ash-bridge: ignoring unreadable .mcp.json: {exc}", file=sys.stderr)
        else:
            if isinstance(loaded, dict) and isinstance(loaded.get("mcpServers"), dict):
                servers.update(loaded["mcpServers"])
    servers.update(extra or {})
    return {name: _logging_stderr(name, spec) for name, spec in servers.items()}


def _logging_stderr(name: str, spec: Any) -> Any:
    """A stdio server's command, run through sh so its stderr is kept in MCP_LOG_DIR: the CLI drops it, so a server
    that fails to start would leave no trace but `status: failed` (the server reads the tail: mcp_failures.py)."""
    if not isinstance(spec, dict) or spec.get("type", "stdio") != "stdio" or not isinstance(spec.get("command"), str):
        return spec
    args = spec.get("args") or []
    if not isinstance(args, list):
        return spec
    log_dir = Path(os.environ.get("HOME") or Path.home()) / MCP_LOG_DIR
    with contextlib.suppress(OSError):
        log_dir.mkdir(parents=True, exist_ok=True)
    wrapper = 'exec "$0" "$@" 2>>' + shlex.quote(str(log_dir / f"{mcp_log_name(name)}.log"))
    return {**spec, "command": "/bin/sh", "args": ["-c", wrapper, spec["command"], *args]}


def _system_prompt(cwd: Path, configured: object) -> str | None:
    """The session's systemPrompt if it set one, else the agent's CLAUDE.md: the agent's system prompt, as in the
    reference (the CLI also reads CLAUDE.md as project memory under the "project" setting source)."""
    if isinstance(configured, str) and configured:
        return configured
    try:
        text = (cwd / "CLAUDE.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text or None


def build_options(typed: BridgeConfig | Mapping[str, Any]) -> ClaudeAgentOptions:
    # The API has validated every value against the SDK's narrower types (Literal modes, thinking shapes).
    config: Mapping[str, Any] = typed
    cwd = Path(config["cwd"])
    initial_agent = config.get("initialAgent")
    return ClaudeAgentOptions(
        cwd=cwd,
        # "project" loads what makes a folder an agent: CLAUDE.md, .claude/settings.json, .claude/skills/.
        setting_sources=config.get("settingSources", ["project"]),
        system_prompt=_system_prompt(cwd, config.get("systemPrompt")),
        model=config.get("model"),
        permission_mode=config.get("permissionMode") or "bypassPermissions",
        allowed_tools=list(config.get("allowedTools") or []),
        disallowed_tools=list(config.get("disallowedTools") or []),
        mcp_servers=_mcp_servers(cwd, config.get("mcpServers")),
        betas=list(config.get("betas") or []),
        resume=config.get("resume"),
        max_turns=config.get("maxTurns"),
        max_budget_usd=config.get("maxBudgetUsd"),
        effort=config.get("effort"),
        thinking=config.get("thinking"),
        output_format=config.get("outputFormat"),
        agents=_agents(config.get("subagents")),
        extra_args={"agent": initial_agent} if isinstance(initial_agent, str) and initial_agent else {},
        cli_path=config.get("cliPath"),
        # The SDK's default (1 MiB per CLI message) fails turns with large replies or tool results.
        max_buffer_size=MAX_FRAME_BYTES // 2,
        # Always ask for partial messages; the server drops them for clients that did not ask, so the choice can
        # be made per turn without reconnecting the CLI.
        include_partial_messages=True,
        stderr=lambda line: print(line, file=sys.stderr, flush=True),
        env={},
    )


class _Unknown:
    pass


UNKNOWN = _Unknown()

# What the pump hands a turn: an SDK message (None: none, the turn just ends) and whether it is the turn's last, or
# the failure that ends it.
_Item = tuple[dict[str, Any] | None, bool] | BaseException
# Bounds what the pump reads ahead of a turn's consumer: past it the pump waits, and so do the SDK and the CLI.
TURN_QUEUE_SIZE = 64


async def _discard(_message: dict[str, Any]) -> None:
    return None


class SdkDriver:
    """Owns the SDK client. connect/reconnect/disconnect must run in one task (the SDK's anyio task group).

    One pump task reads everything the CLI says for as long as the client is connected, and routes it (routing.py):
    to the turn of the query it belongs to, or to `background`, which gets the turns the CLI runs on its own.
    """

    def __init__(self, config: BridgeConfig) -> None:
        self._base: dict[str, Any] = dict(config)
        self._client = ClaudeSDKClient(build_options(self._base))
        self._connection = connection_options(self._base)
        self.sdk_session_id: str | None = self._base.get("resume")
        # The model the CLI runs. A resumed conversation runs on the model its transcript last used (a message's
        # override, say), not on the one the CLI was started with: unknown until set once.
        self._model: str | _Unknown | None = UNKNOWN if self.sdk_session_id else self._base.get("model")
        self._background: Callable[[dict[str, Any]], Awaitable[None]] = _discard
        self._pump: asyncio.Task[None] | None = None
        self._router = Router()
        # The query waiting for its result, and where the pump puts its messages.
        self._query: Query | None = None
        self._items: asyncio.Queue[_Item] = asyncio.Queue(TURN_QUEUE_SIZE)
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, background: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> None:
        """Connect the client; `background` gets every message of the turns the CLI runs on its own."""
        if background is not None:
            self._background = background
        await self._client.connect()
        self._start_pump()

    async def disconnect(self) -> None:
        await self._stop_pump()
        await self._client.disconnect()

    async def interrupt(self) -> None:
        query = self._query
        if query is not None and not query.started:
            # The query waits behind a turn the CLI runs on its own: this interrupt stops that one, and the query
            # is interrupted as soon as it starts (the CLI would otherwise run it to the end).
            query.interrupt_at_start = True
        await self._client.interrupt()

    async def prepare(self, options: dict[str, Any]) -> None:
        """Make the client match a turn's options: set the model, or reconnect if a start-time option changed."""
        wanted = connection_options(options)
        if wanted != self._connection:
            config = {**self._base, **wanted, "model": options.get("model"), "resume": self.sdk_session_id}
            await self.disconnect()
            self._client = ClaudeSDKClient(build_options(config))
            await self._client.connect()
            self._start_pump()
            self._connection = wanted
            self._model = UNKNOWN if self.sdk_session_id else options.get("model")
        model = options.get("model")
        if model != self._model:
            await self._client.set_model(model)
            self._model = model

    async def turn(self, prompt: str | list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Send one user message and yield every SDK message of its turn, up to and including its result."""
        if self._failure is not None:
            raise self._failure
        query = Query(str(uuid.uuid4()))
        self._query = query  # before the query is written: the CLI's first word about it may come at once
        items: asyncio.Queue[_Item] = asyncio.Queue(TURN_QUEUE_SIZE)
        self._items = items
        try:
            await self._client.query(_user_message(prompt, query.uuid))
            while True:
                item = await items.get()
                if isinstance(item, BaseException):
                    raise item
                message, last = item
                if message is not None:
                    yield message
                if last:
                    return
        finally:
            if self._query is query:
                self._query = None

    def _start_pump(self) -> None:
        # The public receive_messages() turns the CLI's JSON into dataclasses; Ash passes SDK messages through
        # unchanged, so it reads the JSON the SDK parses from (see docs/decisions/0001-sdk-passthrough.md). The
        # SDK version is pinned and tests/bridge pins this behaviour.
        query = getattr(self._client, "_query", None)
        if query is None:
            raise RuntimeError("SDK client is not connected")
        self._failure = None
        self._router = Router()
        self._pump = asyncio.create_task(self._run_pump(query.receive_messages()))

    async def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _run_pump(self, messages: AsyncIterator[dict[str, Any]]) -> None:
        failure: BaseException
        try:
            async for message in messages:
                session_id = message.get("session_id")
                if isinstance(session_id, str) and session_id:
                    self.sdk_session_id = session_id
                await self._route(message)
        except Exception as exc:  # the SDK raises plain Exceptions for CLI-reported errors
            failure = exc
        else:
            failure = RuntimeError("the Claude Code CLI ended its message stream")
        self._failure = failure
        if self._query is not None:
            self._query = None
            await self._items.put(failure)

    async def _route(self, message: dict[str, Any]) -> None:
        query = self._query
        waiting = query is not None and not query.started
        destination = self._router.route(message, query)
        if waiting and query is not None and query.started and query.interrupt_at_start:
            self._spawn(self._interrupt_quietly())
        if destination is Destination.BACKGROUND:
            await self._background(message)
        elif destination is not Destination.DROP:
            assert query is not None
            last = destination is not Destination.TURN
            if last:
                self._query = None  # what follows is the CLI's next move, even before the turn is consumed
            await self._items.put((None if destination is Destination.END else message, last))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # Not awaited by the pump: an interrupt's answer is read by the SDK behind the messages the pump takes.
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _interrupt_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.interrupt()


def _user_message(prompt: str | list[dict[str, Any]], uuid_: str) -> AsyncIterator[dict[str, Any]]:
    """The SDK's user message, with the uuid the CLI names the query's lifecycle and messages by."""

    async def one() -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "parent_tool_use_id": None,
            "uuid": uuid_,
        }

    return one()


def config_from_env() -> BridgeConfig:
    path = os.environ.get("ASH_BRIDGE_CONFIG")
    if not path:
        raise SystemExit("ash-bridge: ASH_BRIDGE_CONFIG is not set")
    config: BridgeConfig = json.loads(Path(path).read_text())
    config.setdefault("cwd", os.environ.get("ASH_WORKSPACE_DIR", os.getcwd()))
    return config
