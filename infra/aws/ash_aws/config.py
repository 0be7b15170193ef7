"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
from ash_infra.config import CommonConfig, ConfigError, load_common, machine_type

ModelProvider = Literal["anthropic", "bedrock"]

# t3.large (2 vCPU, 8 GiB) is the smallest size that runs a few sessions (the CLI alone takes ~300 MiB per sandbox).
MIN_INSTANCE_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")


@dataclass(frozen=True, kw_only=True)
class StackConfig(CommonConfig):
    hosted_zone_id: str | None = None
    instance_type: str = "t3.large"
    data_volume_gb: int = 100
    runner_instance_type: str = "c5.xlarge"
    vpc_cidr: str = "10.42.0.0/16"
    db_instance_class: str = "db.t4g.medium"
    db_allocated_gb: int = 20
    db_multi_az: bool = False
    model_provider: ModelProvider = "anthropic"
    allowed_cidrs: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    # The runners' Auto Scaling group: ash:runnerCount is its desired size, these its bounds (both default to it).
    runner_min: int = 0
    runner_max: int = 0


def too_small(instance_type: str) -> bool:
    return instance_type.split(".")[-1] not in MIN_INSTANCE_SIZES


def load_config(config: pulumi.Config | None = None) -> StackConfig:
    config = config or pulumi.Config("ash")
    common = load_common(config, providers=("anthropic", "bedrock"))
    instance_type = machine_type(config, "instanceType", "t3.large", too_small=too_small, smallest="t3.large")
    runner_instance_type = machine_type(
        config, "runnerInstanceType", "c5.xlarge", too_small=too_small, smallest="t3.large"
    )
    runner_min = config.get_int("runnerMin")
    runner_max = config.get_int("runnerMax")
    count = common.runner_count
    runner_min = count if runner_min is None else runner_min
    runner_max = count if runner_max is None else runner_max
    if count and not 1 <= runner_min <= count <= runner_max:
        raise ConfigError(
            f"ash:runnerMin ({runner_min}) <= ash:runnerCount ({count}) <= ash:runnerMax ({runner_max}) must hold, "
            "with at least one runner"
        )
    return StackConfig(
        **common.as_arguments(),
        runner_min=runner_min,
        runner_max=runner_max,
        hosted_zone_id=config.get("hostedZoneId"),
        instance_type=instance_type,
        data_volume_gb=config.get_int("dataVolumeGb") or 100,
        runner_instance_type=runner_instance_type,
        vpc_cidr=config.get("vpcCidr") or "10.42.0.0/16",
        db_instance_class=config.get("dbInstanceClass") or "db.t4g.medium",
        db_allocated_gb=config.get_int("dbAllocatedGb") or 20,
        db_multi_az=config.get_bool("dbMultiAz") or False,
        allowed_cidrs=list(config.get_object("allowedCidrs") or ["0.0.0.0/0"]),
    )


__all__ = ["ConfigError", "StackConfig", "load_config"]
