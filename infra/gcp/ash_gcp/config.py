"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
from ash_infra.config import CommonConfig, ConfigError, load_common, machine_type

ModelProvider = Literal["anthropic", "vertex"]
TOO_SMALL = ("e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1")


@dataclass(frozen=True, kw_only=True)
class StackConfig(CommonConfig):
    project: str
    region: str
    zone: str
    machine_type: str = "e2-standard-2"
    data_disk_gb: int = 100
    runner_machine_type: str = "e2-standard-4"
    subnet_cidr: str = "10.43.0.0/20"
    db_tier: str = "db-custom-2-7680"
    db_high_availability: bool = False
    model_provider: ModelProvider = "anthropic"
    # Existing channels the alert policies also notify, as projects/<project>/notificationChannels/<id>.
    notification_channels: list[str] = field(default_factory=list)
    disk_snapshot_retention_days: int = 14  # daily snapshots of the data disk, kept this long


def too_small(machine: str) -> bool:
    return machine in TOO_SMALL


def load_config(config: pulumi.Config | None = None) -> StackConfig:
    config = config or pulumi.Config("ash")
    gcp = pulumi.Config("gcp")
    common = load_common(config, providers=("anthropic", "vertex"))
    machine = machine_type(config, "machineType", "e2-standard-2", too_small=too_small, smallest="e2-standard-2")
    runner_machine = machine_type(
        config, "runnerMachineType", "e2-standard-4", too_small=too_small, smallest="e2-standard-2"
    )
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
        **common.as_arguments(),
        project=project,
        region=region,
        zone=config.get("zone") or f"{region}-b",
        machine_type=machine,
        data_disk_gb=config.get_int("dataDiskGb") or 100,
        runner_machine_type=runner_machine,
        subnet_cidr=config.get("subnetCidr") or "10.43.0.0/20",
        db_tier=config.get("dbTier") or "db-custom-2-7680",
        db_high_availability=config.get_bool("dbHighAvailability") or False,
        notification_channels=[channel_name(project, c) for c in channels],
        disk_snapshot_retention_days=retention,
    )


def channel_name(project: str, channel: str) -> str:
    """A channel's full name, which alert policies need: an id alone (what the console shows) is in this project."""
    return channel if channel.startswith("projects/") else f"projects/{project}/notificationChannels/{channel}"


__all__ = ["ConfigError", "StackConfig", "load_config"]
