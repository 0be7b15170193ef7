"""Drives one long-lived, connected ClaudeSDKClient for the whole life of the sandbox.

Keeping the client connected is what makes a session's second and later turns cheap: the CLI process start
(~0.6 s, ~0.9 CPU-s) is paid once per sandbox, not once per message.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from claude_agent_sdk import AgentDefinition, ClaudeAgentOptions, ClaudeSDKClient

from .protocol import CONNECTION_OPTIONS, MAX_FRAME_BYTES, BridgeConfig


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
    return servers


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


class SdkDriver:
    """Owns the SDK client. connect/reconnect/disconnect must run in one task (the SDK's anyio task group)."""

    def __init__(self, config: BridgeConfig) -> None:
        self._base: dict[str, Any] = dict(config)
        self._client = ClaudeSDKClient(build_options(self._base))
        self._connection = connection_options(self._base)
        self.sdk_session_id: str | None = self._base.get("resume")
        # The model the CLI runs. A resumed conversation runs on the model its transcript last used (a message's
        # override, say), not on the one the CLI was started with: unknown until set once.
        self._model: str | _Unknown | None = UNKNOWN if self.sdk_session_id else self._base.get("model")

    async def connect(self) -> None:
        await self._client.connect()

    async def disconnect(self) -> None:
        await self._client.disconnect()

    async def interrupt(self) -> None:
        await self._client.interrupt()

    async def prepare(self, options: dict[str, Any]) -> None:
        """Make the client match a turn's options: set the model, or reconnect if a start-time option changed."""
        wanted = connection_options(options)
        if wanted != self._connection:
            config = {**self._base, **wanted, "model": options.get("model"), "resume": self.sdk_session_id}
            await self._client.disconnect()
            self._client = ClaudeSDKClient(build_options(config))
            await self._client.connect()
            self._connection = wanted
            self._model = UNKNOWN if self.sdk_session_id else options.get("model")
        model = options.get("model")
        if model != self._model:
            await self._client.set_model(model)
            self._model = model

    async def turn(self, prompt: str | list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Send one user message and yield every SDK message of the turn, up to and including the result."""
        if isinstance(prompt, str):
            await self._client.query(prompt)
        else:
            await self._client.query(_single_message(prompt))
        async for message in self._raw_messages():
            session_id = message.get("session_id")
            if isinstance(session_id, str) and session_id:
                self.sdk_session_id = session_id
            yield message
            if message.get("type") == "result":
                return

    def _raw_messages(self) -> AsyncIterator[dict[str, Any]]:
        # The public receive_messages() turns the CLI's JSON into dataclasses; Ash passes SDK messages through
        # unchanged, so it reads the JSON the SDK parses from (see docs/decisions/0001-sdk-passthrough.md). The
        # SDK version is pinned and tests/bridge pins this behaviour.
        query = getattr(self._client, "_query", None)
        if query is None:
            raise RuntimeError("SDK client is not connected")
        messages: AsyncIterator[dict[str, Any]] = query.receive_messages()
        return messages


async def _single_message(blocks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield {
        "type": "user",
        "message": {"role": "user", "content": blocks},
        "parent_tool_use_id": None,
    }


def config_from_env() -> BridgeConfig:
    path = os.environ.get("ASH_BRIDGE_CONFIG")
    if not path:
        raise SystemExit("ash-bridge: ASH_BRIDGE_CONFIG is not set")
    config: BridgeConfig = json.loads(Path(path).read_text())
    config.setdefault("cwd", os.environ.get("ASH_WORKSPACE_DIR", os.getcwd()))
    return config
