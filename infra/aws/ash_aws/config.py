"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pulumi

ModelProvider = Literal["anthropic", "bedrock"]

# t3.large (2 vCPU, 8 GiB) is the smallest size that runs a few sessions (the CLI alone takes ~300 MiB per sandbox).
MIN_INSTANCE_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")
# Runners (multi-machine mode): more than this is a typo, not a deployment (raise it here if you really need more).
MAX_RUNNERS = 100
# Settings the stack writes itself: not overridable through ash:settings (which is plain text in user data).
STACK_SETTINGS = ("ASH_MODE", "ASH_SERVER_URL", "ASH_RUNNER_ID", "ASH_RUNNER_ADVERTISE_HOST", "ASH_INTERNAL_SECRET")
# What ASH_INTERNAL_SECRET may contain: it is written to /etc/ash/ash.env between double quotes.
SECRET_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]{32,}")


class ConfigError(ValueError):
    """A setting is missing or not allowed; the message names it and says what to do."""


@dataclass(frozen=True)
class StackConfig:
    domain: str
    api_key: pulumi.Output[str]
    anthropic_api_key: pulumi.Output[str] | None
    credential_key: pulumi.Output[str] | None
    database_password: pulumi.Output[str]
    hosted_zone_id: str | None = None
    instance_type: str = "t3.large"
    data_volume_gb: int = 100
    runner_count: int = 0
    runner_instance_type: str = "c5.xlarge"
    runner_disk_gb: int = 100
    internal_secret: pulumi.Output[str] | None = None  # set when runner_count > 0
    vpc_cidr: str = "10.42.0.0/16"
    db_instance_class: str = "db.t4g.medium"
    db_allocated_gb: int = 20
    db_multi_az: bool = False
    db_deletion_protection: bool = True
    backup_retention_days: int = 7
    snapshots: bool = True
    snapshot_noncurrent_days: int = 30
    model_provider: ModelProvider = "anthropic"
    alarm_email: str | None = None
    allowed_cidrs: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    settings: dict[str, str] = field(default_factory=dict)
    name: str = "ash"


def load_config(config: pulumi.Config | None = None) -> StackConfig:
    config = config or pulumi.Config("ash")
    runner_count = config.get_int("runnerCount") or 0
    if not 0 <= runner_count <= MAX_RUNNERS:
        raise ConfigError(f"ash:runnerCount must be between 0 (one machine, the default) and {MAX_RUNNERS}")
    instance_type = config.get("instanceType") or "t3.large"
    if instance_type.split(".")[-1] not in MIN_INSTANCE_SIZES:
        raise ConfigError(f"ash:instanceType {instance_type} is too small: use t3.large or larger")
    runner_instance_type = config.get("runnerInstanceType") or "c5.xlarge"
    if runner_instance_type.split(".")[-1] not in MIN_INSTANCE_SIZES:
        raise ConfigError(f"ash:runnerInstanceType {runner_instance_type} is too small: use t3.large or larger")
    runner_disk_gb = config.get_int("runnerDiskGb") or 100
    if runner_disk_gb < 30:
        raise ConfigError("ash:runnerDiskGb must be at least 30 (the system, Ash and the sessions a runner holds)")
    snapshots = config.get_bool("snapshots") is not False
    internal_secret = internal_secret_of(config) if runner_count else None
    if runner_count and not snapshots:
        raise ConfigError("ash:snapshots cannot be false with runners: sessions move between runners as snapshots")
    provider = config.get("modelProvider") or "anthropic"
    if provider not in ("anthropic", "bedrock"):
        raise ConfigError("ash:modelProvider must be anthropic or bedrock")
    anthropic_key = config.get_secret("anthropicApiKey")
    if provider == "anthropic" and anthropic_key is None:
        raise ConfigError("set the model key: pulumi config set --secret ash:anthropicApiKey sk-ant-...")
    settings = config.get_object("settings") or {}
    if not isinstance(settings, dict) or any(not str(k).startswith(("ASH_", "ANTHROPIC_")) for k in settings):
        raise ConfigError("ash:settings must map ASH_* names to values (docs/configuration.md)")
    managed = sorted(set(map(str, settings)) & set(STACK_SETTINGS))
    if managed:
        raise ConfigError(f"ash:settings cannot set {', '.join(managed)}: the stack sets it (ash:runnerCount)")
    return StackConfig(
        domain=config.require("domain"),
        api_key=config.require_secret("apiKey"),
        anthropic_api_key=anthropic_key,
        credential_key=config.get_secret("credentialKey"),
        database_password=config.require_secret("databasePassword"),
        hosted_zone_id=config.get("hostedZoneId"),
        instance_type=instance_type,
        data_volume_gb=config.get_int("dataVolumeGb") or 100,
        runner_count=runner_count,
        runner_instance_type=runner_instance_type,
        runner_disk_gb=runner_disk_gb,
        internal_secret=internal_secret,
        vpc_cidr=config.get("vpcCidr") or "10.42.0.0/16",
        db_instance_class=config.get("dbInstanceClass") or "db.t4g.medium",
        db_allocated_gb=config.get_int("dbAllocatedGb") or 20,
        db_multi_az=config.get_bool("dbMultiAz") or False,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=snapshots,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider="bedrock" if provider == "bedrock" else "anthropic",
        alarm_email=config.get("alarmEmail"),
        allowed_cidrs=list(config.get_object("allowedCidrs") or ["0.0.0.0/0"]),
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
