"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
from ash_infra.config import ConfigError, load_common

ModelProvider = Literal["anthropic", "bedrock"]

# t3.large (2 vCPU, 8 GiB) is the smallest size that runs a few sessions (the CLI alone takes ~300 MiB per sandbox).
MIN_INSTANCE_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")


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
    common = load_common(config, providers=("anthropic", "bedrock"))
    instance_type = config.get("instanceType") or "t3.large"
    if instance_type.split(".")[-1] not in MIN_INSTANCE_SIZES:
        raise ConfigError(f"ash:instanceType {instance_type} is too small: use t3.large or larger")
    runner_instance_type = config.get("runnerInstanceType") or "c5.xlarge"
    if runner_instance_type.split(".")[-1] not in MIN_INSTANCE_SIZES:
        raise ConfigError(f"ash:runnerInstanceType {runner_instance_type} is too small: use t3.large or larger")
    return StackConfig(
        domain=config.require("domain"),
        api_key=config.require_secret("apiKey"),
        anthropic_api_key=common.anthropic_api_key,
        credential_key=config.get_secret("credentialKey"),
        database_password=config.require_secret("databasePassword"),
        hosted_zone_id=config.get("hostedZoneId"),
        instance_type=instance_type,
        data_volume_gb=config.get_int("dataVolumeGb") or 100,
        runner_count=common.runner_count,
        runner_instance_type=runner_instance_type,
        runner_disk_gb=common.runner_disk_gb,
        internal_secret=common.internal_secret,
        vpc_cidr=config.get("vpcCidr") or "10.42.0.0/16",
        db_instance_class=config.get("dbInstanceClass") or "db.t4g.medium",
        db_allocated_gb=config.get_int("dbAllocatedGb") or 20,
        db_multi_az=config.get_bool("dbMultiAz") or False,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=common.snapshots,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider="bedrock" if common.model_provider == "bedrock" else "anthropic",
        alarm_email=config.get("alarmEmail"),
        allowed_cidrs=list(config.get_object("allowedCidrs") or ["0.0.0.0/0"]),
        settings=common.settings,
        name=f"ash-{pulumi.get_stack()}",
    )


__all__ = ["ConfigError", "StackConfig", "load_config"]
