"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
from ash_infra.config import ConfigError, load_common

ModelProvider = Literal["anthropic", "vertex"]
TOO_SMALL = ("e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1")


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
    common = load_common(config, providers=("anthropic", "vertex"))
    machine_type = config.get("machineType") or "e2-standard-2"
    if machine_type in TOO_SMALL:
        raise ConfigError(f"ash:machineType {machine_type} is too small: use e2-standard-2 or larger")
    runner_machine_type = config.get("runnerMachineType") or "e2-standard-4"
    if runner_machine_type in TOO_SMALL:
        raise ConfigError(f"ash:runnerMachineType {runner_machine_type} is too small: use e2-standard-2 or larger")
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
        anthropic_api_key=common.anthropic_api_key,
        credential_key=config.get_secret("credentialKey"),
        database_password=config.require_secret("databasePassword"),
        machine_type=machine_type,
        data_disk_gb=config.get_int("dataDiskGb") or 100,
        runner_count=common.runner_count,
        runner_machine_type=runner_machine_type,
        runner_disk_gb=common.runner_disk_gb,
        internal_secret=common.internal_secret,
        subnet_cidr=config.get("subnetCidr") or "10.43.0.0/20",
        db_tier=config.get("dbTier") or "db-custom-2-7680",
        db_high_availability=config.get_bool("dbHighAvailability") or False,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=common.snapshots,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider="vertex" if common.model_provider == "vertex" else "anthropic",
        alarm_email=config.get("alarmEmail"),
        notification_channels=[channel_name(project, c) for c in channels],
        disk_snapshot_retention_days=retention,
        settings=common.settings,
        name=f"ash-{pulumi.get_stack()}",
    )


def channel_name(project: str, channel: str) -> str:
    """A channel's full name, which alert policies need: an id alone (what the console shows) is in this project."""
    return channel if channel.startswith("projects/") else f"projects/{project}/notificationChannels/{channel}"


__all__ = ["ConfigError", "StackConfig", "load_config"]
