"""Assembles the components into the stack and exports what an operator needs (docs/self-hosting/hetzner.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import pulumi
import pulumi_hcloud as hcloud
from ash_infra.boot import API_PORT, Role
from ash_infra.secrets import stack_secrets

from .boot import BOOT_COPY, SECRETS_FILE, BootArgs, user_data
from .compute import Database, DatabaseArgs, MachineArgs, RunnerGroup, RunnerGroupArgs, Server, ServerArgs
from .config import StackConfig
from .dbboot import BACKUP_ENV, DatabaseBootArgs, database_user_data
from .delivery import (
    AshDelivery,
    AshDeliveryArgs,
    DatabaseDelivery,
    DatabaseDeliveryArgs,
    Target,
    floating_ip_on_machine,
)
from .firewall import Firewall, FirewallArgs
from .loadbalancer import LoadBalancer, LoadBalancerArgs
from .network import Network, NetworkArgs, addresses
from .release import release_zip

POSTGRES_PORT = 5432
# What a runner is given: not the API key (runners take no API keys; coordinators authenticate).
RUNNER_SECRETS = (
    "anthropic-api-key",
    "credential-key",
    "database-url",
    "internal-secret",
    "s3-access-key",
    "s3-secret-key",
)


@dataclass
class Stack:
    network: Network
    firewall: Firewall
    database: Database
    server: Server
    load_balancer: LoadBalancer
    deliveries: dict[str, AshDelivery] = field(default_factory=dict)  # by machine name
    database_delivery: DatabaseDelivery | None = None
    runners: RunnerGroup | None = None
    coordinator_url: str | None = None


def build(config: StackConfig) -> Stack:
    name = config.name
    runners = config.runner_count > 0  # multi-machine mode: the server is the coordinator
    ips = addresses(config.subnet_cidr, config.runner_count)
    network = Network(
        name,
        NetworkArgs(
            cidr=config.network_cidr,
            subnet_cidr=config.subnet_cidr,
            network_zone=config.network_zone,
            labels=config.labels,
        ),
    )
    firewall = Firewall(name, FirewallArgs(ssh_allowed_cidrs=config.ssh_allowed_cidrs, labels=config.labels))
    ssh_key = hcloud.SshKey(name, name=name, public_key=config.ssh_public_key, labels=config.labels)

    def machine_args(server_type: str, firewall_: hcloud.Firewall) -> MachineArgs:
        return MachineArgs(
            server_type=server_type,
            image=config.image,
            location=config.location,
            network=network.network,
            subnet=network.subnet,
            firewall=firewall_,
            ssh_key=ssh_key,
            labels=config.labels,
        )

    database = Database(
        name,
        DatabaseArgs(
            **vars(machine_args(config.database_server_type, firewall.database)),
            ip=ips.database,
            volume_gb=config.database_volume_gb,
            protect=config.db_deletion_protection,
        ),
        user_data=lambda volume_id: volume_id.apply(
            lambda v: database_user_data(
                DatabaseBootArgs(
                    volume_id=v,
                    subnet=config.subnet_cidr,
                    bucket=config.bucket,
                    endpoint=config.s3_endpoint,
                    region=config.object_storage_location,
                    retention_days=config.backup_retention_days,
                )
            )
        ),
    )
    # asyncpg takes ssl=require from the URL: PostgreSQL's pg_hba admits TLS connections only (dbboot.py).
    database_url = config.database_password.apply(
        lambda p: f"postgresql://ash:{quote(p, safe='')}@{ips.database}:{POSTGRES_PORT}/ash?ssl=require"
    )
    values = stack_secrets(config, database_url=database_url, runners=runners)
    values |= {"s3-access-key": config.s3_access_key, "s3-secret-key": config.s3_secret_key}
    release, digest = release_zip()
    # In a folder every Debian image has: CopyToRemote makes no parent folder, and it can run (SSH answers) before
    # cloud-init has started the boot script, which makes /opt/ash.
    release_path = f"/opt/ash-release-{digest}.zip"
    snapshot_url = f"s3://{config.bucket}/snapshots"

    def boot(
        role: Role,
        secret_names: list[str],
        volume_id: pulumi.Input[str] | None,
        *,
        coordinator: bool = False,
        server_url: str | None = None,
    ) -> pulumi.Output[str]:
        # A None volume (a runner's) goes through the apply as a known None, so both roles share one.
        return pulumi.Output.from_input(volume_id).apply(
            lambda v: user_data(
                BootArgs(
                    release_path=release_path,
                    secret_names=secret_names,
                    data_volume_id=v,
                    s3_endpoint=config.s3_endpoint,
                    s3_region=config.object_storage_location,
                    snapshot_url=snapshot_url if config.snapshots or role == "runner" else None,
                    settings=config.settings,
                    runtime=config.runtime,
                    role=role,
                    coordinator=coordinator,
                    server_url=server_url,
                )
            )
        )

    server = Server(
        name,
        ServerArgs(
            **vars(machine_args(config.server_type, firewall.server)),
            ip=ips.server,
            data_volume_gb=config.data_volume_gb,
            protect_volume=config.db_deletion_protection,
            floating_ip=config.floating_ip,
        ),
        user_data=lambda volume_id: boot("server", sorted(values), volume_id, coordinator=runners),
        opts=pulumi.ResourceOptions(depends_on=[database]),
    )
    jump = server.server.ipv4_address

    # The database first (the role's password set), so Ash starts against a database it can log in to.
    database_delivery = DatabaseDelivery(
        f"{name}-db",
        DatabaseDeliveryArgs(
            target=Target(host=ips.database, private_key=config.ssh_private_key, jump=jump),
            password=config.database_password,
            backup_env=BACKUP_ENV,
            access_key=config.s3_access_key,
            secret_key=config.s3_secret_key,
        ),
        opts=pulumi.ResourceOptions(depends_on=[database, server]),
    )

    def deliver(
        machine: str, host: pulumi.Input[str], secret_names: list[str], via: pulumi.Input[str] | None
    ) -> AshDelivery:
        return AshDelivery(
            machine,
            AshDeliveryArgs(
                target=Target(host=host, private_key=config.ssh_private_key, jump=via),
                release=release,
                release_path=release_path,
                secrets={key: values[key] for key in secret_names},
                secrets_path=SECRETS_FILE,
                boot_copy=BOOT_COPY,
            ),
            opts=pulumi.ResourceOptions(depends_on=[database_delivery]),
        )

    deliveries = {name: deliver(name, jump, sorted(values), None)}
    if server.floating_ip is not None:
        floating_ip_on_machine(name, Target(host=jump, private_key=config.ssh_private_key), server.floating_ip)
    load_balancer = LoadBalancer(
        name,
        LoadBalancerArgs(
            domain=config.domain,
            location=config.location,
            network=network.network,
            subnet=network.subnet,
            ip=ips.load_balancer,
            server=server.server,
            labels=config.labels,
            dns_zone=config.dns_zone,
        ),
    )

    runner_group = coordinator_url = None
    if runners:
        # Plain HTTP on the private network: every request between coordinator and runners is HMAC-signed.
        coordinator_url = f"http://{ips.server}:{API_PORT}"
        runner_secrets = [key for key in sorted(values) if key in RUNNER_SECRETS]
        runner_group = RunnerGroup(
            f"{name}-runner",
            RunnerGroupArgs(**vars(machine_args(config.runner_server_type, firewall.runner)), ips=ips.runners),
            user_data=boot("runner", runner_secrets, None, server_url=coordinator_url),
            opts=pulumi.ResourceOptions(depends_on=[database, server]),
        )
        for i, ip in enumerate(ips.runners):
            deliveries[f"{name}-runner-{i}"] = deliver(f"{name}-runner-{i}", ip, runner_secrets, jump)
        pulumi.export("runners", [s.name for s in runner_group.servers])
        pulumi.export("coordinatorUrl", coordinator_url)

    pulumi.export("url", f"https://{config.domain}")
    pulumi.export("loadBalancerIpv4", load_balancer.lb.ipv4)
    pulumi.export("loadBalancerIpv6", load_balancer.lb.ipv6)
    pulumi.export("serverIpv4", server.server.ipv4_address)
    pulumi.export("dataVolumeId", server.volume.id)
    pulumi.export("databaseAddress", ips.database)
    pulumi.export("snapshotUrl", snapshot_url)
    pulumi.export("backupUrl", f"s3://{config.bucket}/backups")
    if server.floating_ip is not None:
        pulumi.export("floatingIp", server.floating_ip.ip_address)
    return Stack(
        network,
        firewall,
        database,
        server,
        load_balancer,
        deliveries,
        database_delivery,
        runner_group,
        coordinator_url,
    )
