"""The SDK options have one list (ash_bridge.protocol): the API's bodies, the session service and the bridge driver
take every field of it, and a field added in one place only fails here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel

from ash_bridge.driver import build_options, connection_options
from ash_bridge.protocol import CONNECTION_OPTIONS, SDK_OPTIONS, SESSION_OPTIONS, TURN_OPTIONS
from ash_server.api.schemas import MessageCreate, SessionOptions
from ash_server.sessions.options import TurnOptions, effective_sdk_options

# Fields of a message body that are not SDK options.
MESSAGE_ONLY = {"content", "attachments", "includePartialMessages", "onDisconnect", "autoResume"}

# One value for every option, and where the SDK client built from it shows that value.
VALUES: dict[str, Any] = {
    "model": "model-x",
    "systemPrompt": "be brief",
    "permissionMode": "plan",
    "allowedTools": ["Read"],
    "disallowedTools": ["Bash"],
    "mcpServers": {"extra": {"type": "stdio", "command": "true"}},
    "betas": ["context-1m-2025-08-07"],
    "subagents": {"helper": {"description": "d", "prompt": "p"}},
    "initialAgent": "helper",
    "maxTurns": 3,
    "maxBudgetUsd": 1.5,
    "effort": "low",
    "thinking": {"type": "disabled"},
    "outputFormat": {"type": "json_schema", "schema": {"type": "object"}},
}


def unwrapped(spec: dict[str, Any]) -> dict[str, Any]:
    """A stdio server as the agent gave it, without the wrapper that keeps its stderr (driver._logging_stderr)."""
    assert spec["command"] == "/bin/sh" and spec["args"][0] == "-c"
    assert spec["args"][1].startswith('exec "$0" "$@" 2>>') and spec["args"][1].endswith("/.ash/mcp/extra.log")
    command, *args = spec["args"][2:]
    return {"type": spec["type"], "command": command, **({"args": args} if args else {})}


def wire_names(model: type[Any]) -> set[str]:
    return {to_camel(name) for name in model.model_fields}


def test_the_api_takes_every_option_and_no_other() -> None:
    assert wire_names(SessionOptions) == set(SESSION_OPTIONS)
    assert wire_names(MessageCreate) - MESSAGE_ONLY == set(TURN_OPTIONS)


def test_the_session_service_merges_every_option() -> None:
    assert {to_camel(f.name) for f in dataclasses.fields(TurnOptions)} == set(TURN_OPTIONS)
    turn = TurnOptions(**{f.name: VALUES[to_camel(f.name)] for f in dataclasses.fields(TurnOptions)})
    assert set(turn.sdk()) == set(TURN_OPTIONS)
    session = {k: VALUES[k] for k in SESSION_OPTIONS} | {"model": "session-model"}
    merged = effective_sdk_options(session, turn)
    assert set(merged) == set(SDK_OPTIONS)
    assert merged["model"] == "model-x"  # the message's wins for this turn
    assert effective_sdk_options(session, TurnOptions())["model"] == "session-model"


def test_the_bridge_builds_its_client_from_every_option(tmp_path: Path) -> None:
    assert set(VALUES) == set(SDK_OPTIONS), "a new option needs a value (and a check) here"
    options = build_options({"cwd": str(tmp_path), **VALUES})  # type: ignore[typeddict-item]
    seen = {
        "model": options.model,
        "systemPrompt": options.system_prompt,
        "permissionMode": options.permission_mode,
        "allowedTools": options.allowed_tools,
        "disallowedTools": options.disallowed_tools,
        "mcpServers": {k: unwrapped(v) for k, v in dict(options.mcp_servers).items() if k == "extra"},  # type: ignore[arg-type]
        "betas": options.betas,
        "subagents": {k: {"description": a.description, "prompt": a.prompt} for k, a in (options.agents or {}).items()},
        "initialAgent": options.extra_args.get("agent"),
        "maxTurns": options.max_turns,
        "maxBudgetUsd": options.max_budget_usd,
        "effort": options.effort,
        "thinking": options.thinking,
        "outputFormat": options.output_format,
    }
    assert seen == VALUES
    assert set(connection_options(VALUES)) == set(CONNECTION_OPTIONS) == set(SDK_OPTIONS) - {"model"}
