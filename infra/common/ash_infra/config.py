"""The settings every stack has (the domain, its secrets, runners, snapshots, the database's backups, the model
provider, `ash:settings`), read from Pulumi config (namespace `ash`) and checked before any resource exists. Each
stack's config class extends `CommonConfig` with its cloud's."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import pulumi

# ASH_SANDBOX_RUNTIME of the server and the runners (docs/decisions/0014-gvisor-runtime.md); for gvisor the boot's
# install-ash.sh also installs runsc and the unit's drop-in (systemd/ash-gvisor.conf).
Runtime = Literal["bwrap", "gvisor"]
RUNTIMES: tuple[Runtime, ...] = ("bwrap", "gvisor")
# Runners (multi-machine mode): more than this is a typo, not a deployment (raise it here if you really need more).
MAX_RUNNERS = 100
# Settings the stack writes itself: not overridable through ash:settings (which is plain text in the boot script).
STACK_SETTINGS = ("ASH_MODE", "ASH_SERVER_URL", "ASH_RUNNER_ID", "ASH_RUNNER_ADVERTISE_HOST", "ASH_INTERNAL_SECRET")
# What ASH_INTERNAL_SECRET may contain: it is written to /etc/ash/ash.env between double quotes.
SECRET_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]{32,}")


class ConfigError(ValueError):
    """A setting is missing or not allowed; the message names it and says what to do."""


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    domain: str
    api_key: pulumi.Output[str]
    anthropic_api_key: pulumi.Output[str] | None
    credential_key: pulumi.Output[str] | None
    database_password: pulumi.Output[str]
    runner_count: int = 0
    runner_disk_gb: int = 100
    internal_secret: pulumi.Output[str] | None = None  # set when runner_count > 0
    db_deletion_protection: bool = True
    backup_retention_days: int = 7
    snapshots: bool = True
    snapshot_noncurrent_days: int = 30
    model_provider: str = "anthropic"
    alarm_email: str | None = None  # the alarms by e-mail (an SNS subscription; a GCP notification channel)
    settings: dict[str, str] = field(default_factory=dict)
    runtime: Runtime = "bwrap"  # ASH_SANDBOX_RUNTIME on the server and every runner
    name: str = "ash"

    def as_arguments(self) -> dict[str, Any]:
        """These settings as keyword arguments, for the cloud's config class (which extends this one)."""
        return {f.name: getattr(self, f.name) for f in fields(CommonConfig)}


def load_common(config: pulumi.Config, *, providers: tuple[str, ...]) -> CommonConfig:
    """`providers`: the model providers this cloud offers, `anthropic` first (the default), then its own if any."""
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
        raise ConfigError(f"ash:modelProvider must be {' or '.join(providers)}")
    anthropic_key = config.get_secret("anthropicApiKey")
    if provider == "anthropic" and anthropic_key is None:
        raise ConfigError("set the model key: pulumi config set --secret ash:anthropicApiKey sk-ant-...")
    settings = config.get_object("settings") or {}
    if not isinstance(settings, dict) or any(not str(k).startswith(("ASH_", "ANTHROPIC_")) for k in settings):
        raise ConfigError("ash:settings must map ASH_* names to values (docs/configuration.md)")
    runtime = config.get("runtime") or "bwrap"
    if runtime not in RUNTIMES:
        raise ConfigError("ash:runtime must be bwrap (the default) or gvisor (docs/security.md)")
    if "ASH_SANDBOX_RUNTIME" in settings:
        raise ConfigError("ash:settings cannot set ASH_SANDBOX_RUNTIME: set ash:runtime (it installs runsc too)")
    managed = sorted(set(map(str, settings)) & set(STACK_SETTINGS))
    if managed:
        raise ConfigError(f"ash:settings cannot set {', '.join(managed)}: the stack sets it (ash:runnerCount)")
    return CommonConfig(
        domain=config.require("domain"),
        api_key=config.require_secret("apiKey"),
        anthropic_api_key=anthropic_key,
        credential_key=config.get_secret("credentialKey"),
        database_password=config.require_secret("databasePassword"),
        runner_count=runner_count,
        runner_disk_gb=runner_disk_gb,
        internal_secret=internal_secret,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=snapshots,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider=provider,
        alarm_email=config.get("alarmEmail"),
        settings={str(k): str(v) for k, v in settings.items()},
        runtime="gvisor" if runtime == "gvisor" else "bwrap",
        name=f"ash-{pulumi.get_stack()}",
    )


def machine_type(
    config: pulumi.Config, key: str, default: str, *, too_small: Callable[[str], bool], smallest: str
) -> str:
    """The machine type `ash:<key>` (`default` when unset), refused when `too_small`: `smallest` is the cloud's
    smallest that runs a few sessions."""
    value = config.get(key) or default
    if too_small(value):
        raise ConfigError(f"ash:{key} {value} is too small: use {smallest} or larger")
    return value


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
