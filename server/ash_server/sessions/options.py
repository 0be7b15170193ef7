"""Session configuration and per-message SDK options: what is stored on a session, and what one turn's SDK client
looks like (the names come from ash_bridge.protocol, the one list of SDK options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from ash_bridge.protocol import SESSION_OPTIONS, SdkOptions, TurnSdkOptions

from ..agents import validate_env
from ..errors import Invalid
from ..states import PermissionMode


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """Per-message SDK options (the session's configuration fills in what they leave out)."""

    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    effort: str | None = None
    thinking: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None

    def sdk(self) -> TurnSdkOptions:
        """The wire form (ash_bridge.protocol.TURN_OPTIONS), only the options given."""
        given = {
            "model": self.model,
            "maxTurns": self.max_turns,
            "maxBudgetUsd": self.max_budget_usd,
            "effort": self.effort,
            "thinking": self.thinking,
            "outputFormat": self.output_format,
        }
        return cast(TurnSdkOptions, {k: v for k, v in given.items() if v is not None})


def effective_sdk_options(config: dict[str, Any], turn: TurnOptions) -> SdkOptions:
    """What the bridge's SDK client should look like for this turn: session config, then the message's options.

    Always complete, so a turn without an option returns to the session's value instead of keeping the last one.
    """
    options: dict[str, Any] = {k: config.get(k) for k in SESSION_OPTIONS}
    if options.get("permissionMode") == PermissionMode.PERMISSIONS_BY_AGENT:
        options["permissionMode"] = PermissionMode.DEFAULT.value
    options.update(turn.sdk())
    return cast(SdkOptions, {k: v for k, v in options.items() if v is not None})


def validated_config(options: dict[str, Any]) -> dict[str, Any]:
    """A session's stored configuration: the options given, checked."""
    config = {k: v for k, v in options.items() if v is not None}
    mode = config.get("permissionMode")
    if mode is not None and mode not in set(PermissionMode):
        raise Invalid(f"permissionMode must be one of {sorted(PermissionMode)}", permissionMode=mode)
    if "extraEnv" in config:
        config["extraEnv"] = validate_env(config["extraEnv"])
    return config
