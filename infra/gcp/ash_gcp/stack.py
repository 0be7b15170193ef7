"""Assembles the components into the stack and exports what an operator needs (docs/self-hosting/gcp.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from ash_infra.boot import API_PORT, Role
from ash_infra.secrets import stack_secrets
from ash_infra.source import source_archive

from .boot import BootArgs, startup_script
from .compute import RunnerGroup, RunnerGroupArgs, Server, ServerArgs, service_account
from .config import StackConfig
from .database import Database, DatabaseArgs
from .loadbalancer import LoadBalancer, LoadBalancerArgs
from .monitoring import Monitoring, MonitoringArgs
from .network import Network, NetworkArgs
from .secrets import Secrets, SecretsArgs
from .storage import Storage, StorageArgs

# What the instances' service account may do in the project: write logs and metrics (the Ops Agent). Everything else
# is granted on one resource at a time (each secret, the bucket).
PROJECT_ROLES = ["roles/logging.logWriter", "roles/monitoring.metricWriter"]
VERTEX_ROLE = "roles/aiplatform.user"
# What a runner reads from Secret Manager: not the API key (runners take no API keys; coordinators authenticate).
RUNNER_SECRETS = ("anthropic-api-key", "credential-key", "database-url", "internal-secret")


@dataclass
class Stack:
    network: Network
    secrets: Secrets
    storage: Storage
    database: Database
    server: Server
    load_balancer: LoadBalancer
    monitoring: Monitoring
    runners: RunnerGroup | None = None  # multi-machine mode only
    coordinator_url: pulumi.Output[str] | None = None


def build(config: StackConfig) -> Stack:
    name = config.name
    if config.model_provider == "vertex":
        pulumi.log.warn(
            "ash:modelProvider=vertex grants the service account Vertex AI access, but this version of the server only "
            "relays the Anthropic API (docs/security.md): keep ash:anthropicApiKey set until Vertex support lands"
        )
    roles = PROJECT_ROLES + ([VERTEX_ROLE] if config.model_provider == "vertex" else [])
    child = pulumi.ResourceOptions()
    account = service_account(f"{name}-server", config.project, roles, child)
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    runners = config.runner_count > 0  # multi-machine mode: the server is the coordinator
    runner_account = service_account(f"{name}-runner", config.project, roles, child) if runners else None
    runner_member = runner_account.email.apply(lambda e: f"serviceAccount:{e}") if runner_account else None

    network = Network(name, NetworkArgs(region=config.region, cidr=config.subnet_cidr, runners=runners))
    database = Database(
        name,
        DatabaseArgs(
            region=config.region,
            network_id=network.vpc.id,
            password=config.database_password,
            depends_on=[network.peering],
            tier=config.db_tier,
            high_availability=config.db_high_availability,
            backup_retention_days=config.backup_retention_days,
            deletion_protection=config.db_deletion_protection,
        ),
    )
    secrets = Secrets(name, SecretsArgs(reader=member, runner_reader=runner_member))
    values = stack_secrets(config, database_url=database.url, runners=bool(runners))
    for key, value in values.items():
        secrets.put(key, value, runners=runners and key in RUNNER_SECRETS)

    archive, digest = source_archive()
    storage = Storage(
        name,
        StorageArgs(
            region=config.region,
            archive=archive,
            archive_key=f"artifacts/ash-{digest}.zip",
            writer=member,
            noncurrent_days=config.snapshot_noncurrent_days,
            runner=runner_member,
        ),
    )
    script = boot_script(config, storage, sorted(values), snapshots=config.snapshots, coordinator=runners)
    coordinator = network.coordinator_address
    server = Server(
        name,
        ServerArgs(
            project=config.project,
            zone=config.zone,
            machine_type=config.machine_type,
            subnet_id=network.subnet.id,
            account_email=account.email,
            startup_script=script,
            data_disk_gb=config.data_disk_gb,
            snapshot_retention_days=config.disk_snapshot_retention_days,
            network_ip=coordinator.address if coordinator is not None else None,
        ),
        opts=pulumi.ResourceOptions(depends_on=[secrets, storage, database]),
    )
    load_balancer = LoadBalancer(
        name,
        LoadBalancerArgs(
            domain=config.domain, instance_group=server.group.instance_group, health_check_id=server.health_check.id
        ),
    )

    monitoring = Monitoring(
        name,
        MonitoringArgs(
            project=config.project,
            domain=config.domain,
            instance_prefix=f"{name}-",
            alarm_email=config.alarm_email,
            notification_channels=config.notification_channels,
        ),
    )

    pulumi.export("url", f"https://{config.domain}")
    pulumi.export("address", load_balancer.address.address)
    pulumi.export("instanceGroup", server.group.name)
    pulumi.export("bucket", storage.bucket.name)
    pulumi.export("snapshotUrl", storage.bucket.name.apply(lambda b: f"gs://{b}/snapshots"))
    pulumi.export("databasePrivateIp", database.instance.private_ip_address)
    pulumi.export("serviceAccount", account.email)
    pulumi.export("dataSnapshotPolicy", server.snapshots.name)  # attach it to a data disk made before it existed
    runner_group = coordinator_url = None
    if coordinator is not None and runner_account is not None:
        # Plain HTTP inside the VPC: every request between coordinator and runners is HMAC-signed (no mutual TLS here).
        coordinator_url = coordinator.address.apply(lambda ip: f"http://{ip}:{API_PORT}")
        # A runner always has the snapshot store: it restores what the coordinator's sessions saved.
        runner_script = boot_script(
            config,
            storage,
            [key for key in sorted(values) if key in RUNNER_SECRETS],
            snapshots=True,
            role="runner",
            server_url=coordinator_url,
        )
        runner_group = RunnerGroup(
            f"{name}-runners",
            RunnerGroupArgs(
                zone=config.zone,
                count=config.runner_count,
                machine_type=config.runner_machine_type,
                subnet_id=network.subnet.id,
                account_email=runner_account.email,
                startup_script=runner_script,
                disk_gb=config.runner_disk_gb,
            ),
            opts=pulumi.ResourceOptions(depends_on=[secrets, storage, database, server]),
        )
        pulumi.export("coordinatorUrl", coordinator_url)
        pulumi.export("runnerGroup", runner_group.group.name)
        pulumi.export("runnerServiceAccount", runner_account.email)
    return Stack(network, secrets, storage, database, server, load_balancer, monitoring, runner_group, coordinator_url)


def boot_script(
    config: StackConfig,
    storage: Storage,
    secret_names: list[str],
    *,
    snapshots: bool,
    role: Role = "server",
    coordinator: bool = False,
    server_url: pulumi.Output[str] | None = None,
) -> pulumi.Output[str]:
    """An instance's startup script, the server's or a runner's: one place that names the project, the bucket and the
    secret prefix, so the two roles cannot drift apart."""
    # A None URL (the server's) goes through Output.all as a known None, so both roles share one apply.
    return pulumi.Output.all(storage.bucket.name, storage.artifact.name, server_url).apply(
        lambda a: startup_script(
            BootArgs(
                project=config.project,
                bucket=a[0],
                archive_key=a[1],
                secret_prefix=config.name,
                secret_names=secret_names,
                snapshot_url=f"gs://{a[0]}/snapshots" if snapshots else None,
                settings=config.settings,
                runtime=config.runtime,
                role=role,
                coordinator=coordinator,
                server_url=a[2],
            )
        )
    )
