"""Assembles the components into the stack and exports what an operator needs (docs/self-hosting/gcp.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from .boot import BootArgs, startup_script
from .compute import Server, ServerArgs, service_account
from .config import StackConfig
from .database import Database, DatabaseArgs
from .loadbalancer import LoadBalancer, LoadBalancerArgs
from .network import Network, NetworkArgs
from .secrets import Secrets, SecretsArgs
from .source import source_archive
from .storage import Storage, StorageArgs

# What the instances' service account may do in the project: write logs and metrics (the Ops Agent). Everything else
# is granted on one resource at a time (each secret, the bucket).
PROJECT_ROLES = ["roles/logging.logWriter", "roles/monitoring.metricWriter"]
VERTEX_ROLE = "roles/aiplatform.user"


@dataclass
class Stack:
    network: Network
    secrets: Secrets
    storage: Storage
    database: Database
    server: Server
    load_balancer: LoadBalancer


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

    network = Network(name, NetworkArgs(region=config.region, cidr=config.subnet_cidr))
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
    secrets = Secrets(name, SecretsArgs(reader=member))
    values: dict[str, pulumi.Input[str]] = {"api-key": config.api_key, "database-url": database.url}
    if config.anthropic_api_key is not None:
        values["anthropic-api-key"] = config.anthropic_api_key
    if config.credential_key is not None:
        values["credential-key"] = config.credential_key
    for key, value in values.items():
        secrets.put(key, value)

    archive, digest = source_archive()
    storage = Storage(
        name,
        StorageArgs(
            region=config.region,
            archive=archive,
            archive_key=f"artifacts/ash-{digest}.zip",
            writer=member,
            noncurrent_days=config.snapshot_noncurrent_days,
        ),
    )
    script = pulumi.Output.all(storage.bucket.name, storage.artifact.name).apply(
        lambda a: startup_script(
            BootArgs(
                project=config.project,
                bucket=a[0],
                archive_key=a[1],
                secret_prefix=name,
                secret_names=sorted(values),
                snapshot_url=f"gs://{a[0]}/snapshots" if config.snapshots else None,
                settings=config.settings,
            )
        )
    )
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
        ),
        opts=pulumi.ResourceOptions(depends_on=[secrets, storage, database]),
    )
    load_balancer = LoadBalancer(
        name,
        LoadBalancerArgs(
            domain=config.domain, instance_group=server.group.instance_group, health_check_id=server.health_check.id
        ),
    )

    pulumi.export("url", f"https://{config.domain}")
    pulumi.export("address", load_balancer.address.address)
    pulumi.export("instanceGroup", server.group.name)
    pulumi.export("bucket", storage.bucket.name)
    pulumi.export("snapshotUrl", storage.bucket.name.apply(lambda b: f"gs://{b}/snapshots"))
    pulumi.export("databasePrivateIp", database.instance.private_ip_address)
    pulumi.export("serviceAccount", account.email)
    return Stack(network, secrets, storage, database, server, load_balancer)
