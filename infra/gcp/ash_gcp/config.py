"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

ModelProvider = Literal["anthropic", "vertex"]
TOO_SMALL = ("e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small", "n1-standard-1")


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
    subnet_cidr: str = "10.43.0.0/20"
    db_tier: str = "db-custom-2-7680"
    db_high_availability: bool = False
    db_deletion_protection: bool = True
    backup_retention_days: int = 7
    snapshots: bool = True
    snapshot_noncurrent_days: int = 30
    model_provider: ModelProvider = "anthropic"
    settings: dict[str, str] = field(default_factory=dict)
    name: str = "ash"


def load_config(config: pulumi.Config | None = None) -> StackConfig:
    config = config or pulumi.Config("ash")
    gcp = pulumi.Config("gcp")
    runner_count = config.get_int("runnerCount") or 0
    if runner_count:
        raise ConfigError(
            "ash:runnerCount must be 0: runners need multi-machine mode (ASH_MODE=coordinator, `ash runner`), which "
            "this version of Ash does not have (docs/self-hosting/multi-machine.md)"
        )
    machine_type = config.get("machineType") or "e2-standard-2"
    if machine_type in TOO_SMALL:
        raise ConfigError(f"ash:machineType {machine_type} is too small: use e2-standard-2 or larger")
    provider = config.get("modelProvider") or "anthropic"
    if provider not in ("anthropic", "vertex"):
        raise ConfigError("ash:modelProvider must be anthropic or vertex")
    anthropic_key = config.get_secret("anthropicApiKey")
    if provider == "anthropic" and anthropic_key is None:
        raise ConfigError("set the model key: pulumi config set --secret ash:anthropicApiKey sk-ant-...")
    settings = config.get_object("settings") or {}
    if not isinstance(settings, dict) or any(not str(k).startswith(("ASH_", "ANTHROPIC_")) for k in settings):
        raise ConfigError("ash:settings must map ASH_* names to values (docs/configuration.md)")
    region = gcp.require("region")
    return StackConfig(
        domain=config.require("domain"),
        project=gcp.require("project"),
        region=region,
        zone=config.get("zone") or f"{region}-b",
        api_key=config.require_secret("apiKey"),
        anthropic_api_key=anthropic_key,
        credential_key=config.get_secret("credentialKey"),
        database_password=config.require_secret("databasePassword"),
        machine_type=machine_type,
        data_disk_gb=config.get_int("dataDiskGb") or 100,
        runner_count=runner_count,
        subnet_cidr=config.get("subnetCidr") or "10.43.0.0/20",
        db_tier=config.get("dbTier") or "db-custom-2-7680",
        db_high_availability=config.get_bool("dbHighAvailability") or False,
        db_deletion_protection=config.get_bool("dbDeletionProtection") is not False,
        backup_retention_days=config.get_int("backupRetentionDays") or 7,
        snapshots=config.get_bool("snapshots") is not False,
        snapshot_noncurrent_days=config.get_int("snapshotNoncurrentDays") or 30,
        model_provider="vertex" if provider == "vertex" else "anthropic",
        settings={str(k): str(v) for k, v in settings.items()},
        name=f"ash-{pulumi.get_stack()}",
    )
