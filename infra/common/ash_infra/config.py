"""The settings every stack has (runners, snapshots, the model provider's key, `ash:settings`, the internal secret),
read from Pulumi config (namespace `ash`) and checked before any resource exists. Each stack adds its cloud's."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi

# Runners (multi-machine mode): more than this is a typo, not a deployment (raise it here if you really need more).
MAX_RUNNERS = 100
# Settings the stack writes itself: not overridable through ash:settings (which is plain text in the boot script).
STACK_SETTINGS = ("ASH_MODE", "ASH_SERVER_URL", "ASH_RUNNER_ID", "ASH_RUNNER_ADVERTISE_HOST", "ASH_INTERNAL_SECRET")
# What ASH_INTERNAL_SECRET may contain: it is written to /etc/ash/ash.env between double quotes.
SECRET_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]{32,}")


class ConfigError(ValueError):
    """A setting is missing or not allowed; the message names it and says what to do."""


@dataclass(frozen=True)
class CommonConfig:
    runner_count: int
    runner_disk_gb: int
    snapshots: bool
    internal_secret: pulumi.Output[str] | None
    model_provider: str
    anthropic_api_key: pulumi.Output[str] | None
    settings: dict[str, str]


def load_common(config: pulumi.Config, *, providers: tuple[str, str]) -> CommonConfig:
    """`providers`: the model providers this cloud offers, `anthropic` first (the default) and its own second."""
    runner_count = config.get_int("runnerCount") or 0
    if not 0 <= runner_count <= MAX_RUNNERS:
        raise ConfigError(f"ash:runnerCount must be between 0 (one machine, the default) and {MAX_RUNNERS}")
    runner_disk_gb = config.get_int("runnerDiskGb") or 100
    if runner_disk_gb < 30:
        raise ConfigError("ash:runnerDiskGb must be at least 30 (the system, Ash and the sessions a runner holds)")
    snapshots = config.get_bool("snapshots") is not False
    internal_secret = internal_secret_of(config) if runner_count else None
    if runner_count and not snapshots:
        raise ConfigError("ash:snapshots cannot be false with runners: sessions move between runners as snapshots")
    provider = config.get("modelProvider") or providers[0]
    if provider not in providers:
        raise ConfigError(f"ash:modelProvider must be {providers[0]} or {providers[1]}")
    anthropic_key = config.get_secret("anthropicApiKey")
    if provider == "anthropic" and anthropic_key is None:
        raise ConfigError("set the model key: pulumi config set --secret ash:anthropicApiKey sk-ant-...")
    settings = config.get_object("settings") or {}
    if not isinstance(settings, dict) or any(not str(k).startswith(("ASH_", "ANTHROPIC_")) for k in settings):
        raise ConfigError("ash:settings must map ASH_* names to values (docs/configuration.md)")
    managed = sorted(set(map(str, settings)) & set(STACK_SETTINGS))
    if managed:
        raise ConfigError(f"ash:settings cannot set {', '.join(managed)}: the stack sets it (ash:runnerCount)")
    return CommonConfig(
        runner_count=runner_count,
        runner_disk_gb=runner_disk_gb,
        snapshots=snapshots,
        internal_secret=internal_secret,
        model_provider=provider,
        anthropic_api_key=anthropic_key,
        settings={str(k): str(v) for k, v in settings.items()},
    )


def internal_secret_of(config: pulumi.Config) -> pulumi.Output[str]:
    """ASH_INTERNAL_SECRET, which signs every request between the coordinator and the runners. A config secret like
    the stack's other secrets (pulumi_random is not part of the `infra` extra). It must stay the same once set:
    coordinators also derive the API key hashing secret from it."""
    raw = config.get("internalSecret")  # checked here only; the value travels as the secret Output below
    if raw is None:
        raise ConfigError(
            'runners need the internal secret: pulumi config set --secret ash:internalSecret "$(openssl rand -hex 32)"'
        )
    if not SECRET_CHARACTERS.fullmatch(raw):
        raise ConfigError(
            "ash:internalSecret must be 32+ characters of letters, digits and ._~+/=- (openssl rand -hex 32)"
        )
    return config.require_secret("internalSecret")
