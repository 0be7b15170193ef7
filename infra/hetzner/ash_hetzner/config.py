"""The stack's settings, read once from Pulumi config (namespace `ash`) and validated before any resource exists."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import pulumi
from ash_infra.config import CommonConfig, ConfigError, load_common, machine_type

# Memory (GB) of the server types too small to run a few sessions (the CLI alone takes ~300 MiB per sandbox): the
# shared (cx, cpx) and Arm (cax) types under 8 GB. Types not listed are accepted (new ones appear often).
SMALL_TYPES = {"cx11": 2, "cx21": 4, "cx22": 4, "cx23": 4, "cpx11": 2, "cpx21": 4, "cpx22": 4, "cax11": 4}
# The database server: PostgreSQL alone; 2 GB is its floor.
TINY_TYPES = {"cx11", "cpx11"}
LOCATIONS = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}
OBJECT_STORAGE_LOCATIONS = ("fsn1", "nbg1", "hel1")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, kw_only=True)
class StackConfig(CommonConfig):
    ssh_allowed_cidrs: list[str]
    ssh_public_key: str
    ssh_private_key: pulumi.Output[str]
    bucket: str
    s3_access_key: pulumi.Output[str]
    s3_secret_key: pulumi.Output[str]
    location: str = "fsn1"
    object_storage_location: str = "fsn1"
    server_type: str = "cpx31"
    runner_server_type: str = "cpx41"
    database_server_type: str = "cpx21"
    image: str = "debian-12"
    data_volume_gb: int = 100
    database_volume_gb: int = 20
    network_cidr: str = "10.44.0.0/16"
    subnet_cidr: str = "10.44.1.0/24"
    floating_ip: bool = False
    dns_zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def network_zone(self) -> str:
        return LOCATIONS[self.location]

    @property
    def s3_endpoint(self) -> str:
        return f"https://{self.object_storage_location}.your-objectstorage.com"


def too_small(server_type: str) -> bool:
    return server_type in SMALL_TYPES


def allowlist(config: pulumi.Config) -> list[str]:
    """ash:sshAllowedCidrs: where SSH (and so `pulumi up`, which delivers the secrets over SSH) comes from. Required,
    and never the whole internet: the server's only public port besides none."""
    value = config.get_object("sshAllowedCidrs")
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise ConfigError(
            "ash:sshAllowedCidrs must be a non-empty list of networks: pulumi config set --path"
            ' "ash:sshAllowedCidrs[0]" 203.0.113.7/32 (the address `pulumi up` runs from)'
        )
    cidrs = []
    for cidr in value:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"ash:sshAllowedCidrs: {cidr!r} is not a network (203.0.113.7/32)") from None
        if network.prefixlen == 0:
            raise ConfigError(f"ash:sshAllowedCidrs cannot hold {cidr}: SSH is never open to the whole internet")
        cidrs.append(str(network))
    return cidrs


def load_config(config: pulumi.Config | None = None) -> StackConfig:
    config = config or pulumi.Config("ash")
    common = load_common(config, providers=("anthropic",))
    location = config.get("location") or "fsn1"
    if location not in LOCATIONS:
        raise ConfigError(f"ash:location must be one of {', '.join(LOCATIONS)}")
    storage_location = config.get("objectStorageLocation") or "fsn1"
    if storage_location not in OBJECT_STORAGE_LOCATIONS:
        raise ConfigError(f"ash:objectStorageLocation must be one of {', '.join(OBJECT_STORAGE_LOCATIONS)}")
    bucket = config.get("bucket")
    if not bucket:
        raise ConfigError(
            "ash:bucket is required: create an Object Storage bucket and its S3 keys in the Hetzner console "
            "(docs/self-hosting/hetzner.md), then pulumi config set ash:bucket NAME"
        )
    if not BUCKET_NAME.fullmatch(bucket):
        raise ConfigError(f"ash:bucket {bucket!r} is not a bucket name (3-63 of a-z, 0-9, '.' and '-')")
    dns_zone = config.get("dnsZone")
    if dns_zone and common.domain != dns_zone and not common.domain.endswith(f".{dns_zone}"):
        raise ConfigError(f"ash:domain {common.domain} is not in ash:dnsZone {dns_zone}")
    for key in ("s3AccessKey", "s3SecretKey", "sshPrivateKey"):
        if config.get(key) is None:
            raise ConfigError(f"set ash:{key}: pulumi config set --secret ash:{key} ... (docs/self-hosting/hetzner.md)")
    server_type = machine_type(config, "serverType", "cpx31", too_small=too_small, smallest="cpx31")
    runner_server_type = machine_type(config, "runnerServerType", "cpx41", too_small=too_small, smallest="cpx31")
    database_server_type = machine_type(
        config, "databaseServerType", "cpx21", too_small=lambda t: t in TINY_TYPES, smallest="cpx21"
    )
    data_volume_gb = config.get_int("dataVolumeGb") or 100
    database_volume_gb = config.get_int("databaseVolumeGb") or 20
    if data_volume_gb < 10 or database_volume_gb < 10:
        raise ConfigError("ash:dataVolumeGb and ash:databaseVolumeGb must be at least 10 (Hetzner's smallest volume)")
    return StackConfig(
        **common.as_arguments(),
        ssh_allowed_cidrs=allowlist(config),
        ssh_public_key=config.require("sshPublicKey"),
        ssh_private_key=config.require_secret("sshPrivateKey"),
        bucket=bucket,
        s3_access_key=config.require_secret("s3AccessKey"),
        s3_secret_key=config.require_secret("s3SecretKey"),
        location=location,
        object_storage_location=storage_location,
        server_type=server_type,
        runner_server_type=runner_server_type,
        database_server_type=database_server_type,
        image=config.get("image") or "debian-12",
        data_volume_gb=data_volume_gb,
        database_volume_gb=database_volume_gb,
        floating_ip=config.get_bool("floatingIp") or False,
        dns_zone=dns_zone,
        labels={"ash-stack": common.name},
    )


__all__ = ["ConfigError", "StackConfig", "load_config"]
