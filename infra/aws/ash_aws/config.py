"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

ModelProvider = Literal["anthropic", "bedrock"]

# t3.large (2 vCPU, 8 GiB) is the smallest size that runs a few sessions (the CLI alone takes ~300 MiB per sandbox).
MIN_INSTANCE_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")


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
    if runner_count:
        raise ConfigError(
            "ash:runnerCount must be 0: runners need multi-machine mode (ASH_MODE=coordinator, `ash runner`), which "
            "this version of Ash does not have (docs/self-hosting/multi-machine.md)"
        )
    instance_type = config.get("instanceType") or "t3.large"
    if instance_type.split(".")[-1] not in MIN_INSTANCE_SIZES:
        raise ConfigError(f"ash:instanceType {instance_type} is too small: use t3.large or larger")
    provider = config.get("modelProvider") or "anthropic"
    if provider not in ("anthropic", "bedrock"):
        raise ConfigError("ash:modelProvider must be anthropic or bedrock")
    anthropic_key = config.get_secret("anthropicApiKey")
    if provider == "anthropic" and anthropic_key is None:
        raise ConfigError("set the model key: pulumi config set --secret ash:anthropicApiKey sk-ant-...")
    settings = config.get_object("settings") or {}
    if not isinstance(settings, dict) or any(not str(k).startswith(("ASH_", "ANTHROPIC_")) for k in settings):
        raise ConfigError("ash:settings must map ASH_* names to values (docs/configuration.md)")
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
        vpc_cidr=config.get("vpcCidr") or "10.42.0.0/16",
        db_instance_class=config.get("dbInstanceClass") or "db.t4g.medium",
        db_allocated_gb=config.get_int("dbAllocatedGb") or 20,
        db_multi_az=config.get_bool("dbMultiAz") or False,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=config.get_bool("snapshots") is not False,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider="bedrock" if provider == "bedrock" else "anthropic",
        alarm_email=config.get("alarmEmail"),
        allowed_cidrs=list(config.get_object("allowedCidrs") or ["0.0.0.0/0"]),
        settings={str(k): str(v) for k, v in settings.items()},
        name=f"ash-{pulumi.get_stack()}",
    )
