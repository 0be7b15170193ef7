"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pulumi

ModelProvider = Literal["anthropic", "vertex"]
TOO_SMALL = ("e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1")
# Runners (multi-machine mode): more than this is a typo, not a deployment (raise it here if you really need more).
MAX_RUNNERS = 100
# Settings the stack writes itself: not overridable through ash:settings (which is plain text in the startup script).
STACK_SETTINGS = ("ASH_MODE", "ASH_SERVER_URL", "ASH_RUNNER_ID", "ASH_RUNNER_ADVERTISE_HOST", "ASH_INTERNAL_SECRET")
# What ASH_INTERNAL_SECRET may contain: it is written to /etc/ash/ash.env between double quotes.
SECRET_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]{32,}")


class ConfigError(ValueError):
    """A setting is missing or not allowed; the message names it and says what to do."""


@dataclass(frozen=True)
class StackConfig:
    domain: str
    project: str
    region: str
    zone: str
    api_key: pulumi.Output[str]
    anthropic_api_key: pulumi.Output[str] | None
    credential_key: pulumi.Output[str] | None
    database_password: pulumi.Output[str]
    machine_type: str = "e2-standard-2"
    data_disk_gb: int = 100
    runner_count: int = 0
    runner_machine_type: str = "e2-standard-4"
    runner_disk_gb: int = 100
    internal_secret: pulumi.Output[str] | None = None  # set when runner_count > 0
    subnet_cidr: str = "10.43.0.0/20"
    db_tier: str = "db-custom-2-7680"
    db_high_availability: bool = False
    db_deletion_protection: bool = True
    backup_retention_days: int = 7
    snapshots: bool = True
    snapshot_noncurrent_days: int = 30
    model_provider: ModelProvider = "anthropic"
    alarm_email: str | None = None  # an e-mail notification channel for the alert policies (the AWS stack's key)
    # Existing channels the alert policies also notify, as projects/<project>/notificationChannels/<id>.
    notification_channels: list[str] = field(default_factory=list)
    disk_snapshot_retention_days: int = 14  # daily snapshots of the data disk, kept this long
    settings: dict[str, str] = field(default_factory=dict)
    name: str = "ash"


def load_config(config: pulumi.Config | None = None) -> StackConfig:
    config = config or pulumi.Config("ash")
    gcp = pulumi.Config("gcp")
    runner_count = config.get_int("runnerCount") or 0
    if not 0 <= runner_count <= MAX_RUNNERS:
        raise ConfigError(f"ash:runnerCount must be between 0 (one machine, the default) and {MAX_RUNNERS}")
    machine_type = config.get("machineType") or "e2-standard-2"
    if machine_type in TOO_SMALL:
        raise ConfigError(f"ash:machineType {machine_type} is too small: use e2-standard-2 or larger")
    runner_machine_type = config.get("runnerMachineType") or "e2-standard-4"
    if runner_machine_type in TOO_SMALL:
        raise ConfigError(f"ash:runnerMachineType {runner_machine_type} is too small: use e2-standard-2 or larger")
    runner_disk_gb = config.get_int("runnerDiskGb") or 100
    if runner_disk_gb < 30:
        raise ConfigError("ash:runnerDiskGb must be at least 30 (the system, Ash and the sessions a runner holds)")
    snapshots = config.get_bool("snapshots") is not False
    internal_secret = internal_secret_of(config) if runner_count else None
    if runner_count and not snapshots:
        raise ConfigError("ash:snapshots cannot be false with runners: sessions move between runners as snapshots")
    provider = config.get("modelProvider") or "anthropic"
    if provider not in ("anthropic", "vertex"):
        raise ConfigError("ash:modelProvider must be anthropic or vertex")
    anthropic_key = config.get_secret("anthropicApiKey")
    if provider == "anthropic" and anthropic_key is None:
        raise ConfigError("set the model key: pulumi config set --secret ash:anthropicApiKey sk-ant-...")
    settings = config.get_object("settings") or {}
    if not isinstance(settings, dict) or any(not str(k).startswith(("ASH_", "ANTHROPIC_")) for k in settings):
        raise ConfigError("ash:settings must map ASH_* names to values (docs/configuration.md)")
    managed = sorted(set(map(str, settings)) & set(STACK_SETTINGS))
    if managed:
        raise ConfigError(f"ash:settings cannot set {', '.join(managed)}: the stack sets it (ash:runnerCount)")
    region = gcp.require("region")
    project = gcp.require("project")
    channels = config.get_object("notificationChannels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
        raise ConfigError(
            "ash:notificationChannels must be a list of notification channel ids (gcloud beta monitoring channels list)"
        )
    retention = config.get_int("diskSnapshotRetentionDays")
    retention = 14 if retention is None else retention
    if retention < 1:
        raise ConfigError("ash:diskSnapshotRetentionDays must be at least 1 (the data disk's daily snapshots)")
    return StackConfig(
        domain=config.require("domain"),
        project=project,
        region=region,
        zone=config.get("zone") or f"{region}-b",
        api_key=config.require_secret("apiKey"),
        anthropic_api_key=anthropic_key,
        credential_key=config.get_secret("credentialKey"),
        database_password=config.require_secret("databasePassword"),
        machine_type=machine_type,
        data_disk_gb=config.get_int("dataDiskGb") or 100,
        runner_count=runner_count,
        runner_machine_type=runner_machine_type,
        runner_disk_gb=runner_disk_gb,
        internal_secret=internal_secret,
        subnet_cidr=config.get("subnetCidr") or "10.43.0.0/20",
        db_tier=config.get("dbTier") or "db-custom-2-7680",
        db_high_availability=config.get_bool("dbHighAvailability") or False,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=snapshots,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider="vertex" if provider == "vertex" else "anthropic",
        alarm_email=config.get("alarmEmail"),
        notification_channels=[channel_name(project, c) for c in channels],
        disk_snapshot_retention_days=retention,
        settings={str(k): str(v) for k, v in settings.items()},
        name=f"ash-{pulumi.get_stack()}",
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


def channel_name(project: str, channel: str) -> str:
    """A channel's full name, which alert policies need: an id alone (what the console shows) is in this project."""
    return channel if channel.startswith("projects/") else f"projects/{project}/notificationChannels/{channel}"
