"""Assembles the components into the stack and exports what an operator needs (docs/self-hosting/aws.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from ash_infra.boot import Role
from ash_infra.secrets import stack_secrets
from ash_infra.source import source_archive

from .boot import BootArgs, user_data
from .compute import RunnerGroup, RunnerGroupArgs, Server, ServerArgs, architecture
from .config import StackConfig
from .database import Database, DatabaseArgs
from .firewall import Firewall, FirewallArgs
from .internal import CoordinatorName, CoordinatorNameArgs
from .keypolicy import key_policy
from .loadbalancer import LoadBalancer, LoadBalancerArgs
from .monitoring import Monitoring, MonitoringArgs
from .network import Network, NetworkArgs
from .policy import instance_policy
from .secrets import Secrets, SecretsArgs
from .storage import Storage, StorageArgs


@dataclass
class Stack:
    network: Network
    firewall: Firewall
    secrets: Secrets
    storage: Storage
    database: Database
    load_balancer: LoadBalancer
    server: Server
    monitoring: Monitoring
    coordinator_name: CoordinatorName | None = None  # with runners only
    runners: RunnerGroup | None = None


# What a runner reads from Parameter Store: not the API key (runners take no API keys; coordinators authenticate).
RUNNER_SECRETS = ("anthropic-api-key", "credential-key", "database-url", "internal-secret")


def build(config: StackConfig) -> Stack:
    name = config.name
    region = aws.get_region_output().region
    account = aws.get_caller_identity_output().account_id
    if config.model_provider == "bedrock":
        pulumi.log.warn(
            "ash:modelProvider=bedrock grants the instance role Bedrock access, but this version of the server only "
            "relays the Anthropic API (docs/security.md): keep ash:anthropicApiKey set until Bedrock support lands"
        )

    runners = config.runner_count > 0  # multi-machine mode: the server is the coordinator
    network = Network(name, NetworkArgs(cidr=config.vpc_cidr))
    firewall = Firewall(name, FirewallArgs(vpc_id=network.vpc.id, allowed_cidrs=config.allowed_cidrs, runners=runners))
    secrets = Secrets(
        name,
        SecretsArgs(
            prefix=f"/ash/{name}",
            key_policy=account.apply(lambda a: json.dumps(key_policy(account=a, runners=runners))),
        ),
    )
    key_arn = secrets.key.arn
    database = Database(
        name,
        DatabaseArgs(
            subnet_ids=[s.id for s in network.private_subnets],
            security_group_id=firewall.database.id,
            kms_key_arn=key_arn,
            password=config.database_password,
            instance_class=config.db_instance_class,
            allocated_gb=config.db_allocated_gb,
            multi_az=config.db_multi_az,
            backup_retention_days=config.backup_retention_days,
            deletion_protection=config.db_deletion_protection,
        ),
    )
    values = stack_secrets(config, database_url=database.url, runners=bool(runners))
    for key, value in values.items():
        secrets.put(key, value)
    archive, digest = source_archive()
    storage = Storage(
        name,
        StorageArgs(
            kms_key_arn=key_arn,
            archive=archive,
            archive_key=f"artifacts/ash-{digest}.zip",
            noncurrent_days=config.snapshot_noncurrent_days,
        ),
    )
    load_balancer = LoadBalancer(
        name,
        LoadBalancerArgs(
            domain=config.domain,
            vpc_id=network.vpc.id,
            subnet_ids=[s.id for s in network.public_subnets],
            security_group_id=firewall.lb.id,
            hosted_zone_id=config.hosted_zone_id,
        ),
    )

    log_group = f"/ash/{name}"
    namespace = f"Ash/{name}"

    def role_policy(parameter_names: list[str] | None) -> pulumi.Output[str]:
        return pulumi.Output.all(region, account, key_arn, storage.bucket.arn).apply(
            lambda a: json.dumps(
                instance_policy(
                    parameter_arn_prefix=f"arn:aws:ssm:{a[0]}:{a[1]}:parameter/ash/{name}",
                    parameter_names=parameter_names,
                    key_arn=a[2],
                    bucket_arn=a[3],
                    log_group_arn=f"arn:aws:logs:{a[0]}:{a[1]}:log-group:{log_group}",
                    metrics_namespace=namespace,
                    region=a[0],
                    bedrock=config.model_provider == "bedrock",
                )
            )
        )

    policy = role_policy(None)

    def boot(volume_id: pulumi.Output[str]) -> pulumi.Output[str]:
        return boot_data(
            config,
            region,
            storage,
            sorted(values),
            instance_type=config.instance_type,
            snapshots=config.snapshots,
            data_volume_id=volume_id,
            coordinator=runners,
        )

    server = Server(
        name,
        ServerArgs(
            instance_type=config.instance_type,
            subnet=network.private_subnets[0],
            security_group_id=firewall.server.id,
            kms_key_arn=key_arn,
            policy=policy,
            target_group_arn=load_balancer.target_group.arn,
            data_volume_gb=config.data_volume_gb,
        ),
        user_data=boot,
        opts=pulumi.ResourceOptions(depends_on=[secrets, storage]),
    )
    monitoring = Monitoring(
        name,
        MonitoringArgs(
            region=region,
            account=account,
            kms_key_arn=key_arn,
            alb_arn_suffix=load_balancer.alb.arn_suffix,
            target_group_arn_suffix=load_balancer.target_group.arn_suffix,
            instance_id=server.instance.id,
            database_id=database.instance.identifier,
            alarm_email=config.alarm_email,
        ),
    )
    coordinator_name = runner_group = None
    if runners:
        coordinator_name, runner_group = build_runners(
            config, network, firewall, secrets, storage, server, region, sorted(values), role_policy
        )

    pulumi.export("url", f"https://{config.domain}")
    pulumi.export("loadBalancerDnsName", load_balancer.alb.dns_name)
    pulumi.export("serverInstanceId", server.instance.id)
    pulumi.export("dataVolumeId", server.volume.id)
    pulumi.export("bucket", storage.bucket.bucket)
    pulumi.export("snapshotUrl", storage.bucket.bucket.apply(lambda b: f"s3://{b}/snapshots"))
    pulumi.export("databaseEndpoint", database.instance.address)
    pulumi.export("parameterPrefix", f"/ash/{name}")
    pulumi.export("logGroup", monitoring.log_group.name)
    if coordinator_name is not None and runner_group is not None:
        pulumi.export("coordinatorUrl", coordinator_name.url)
        pulumi.export("runnerGroup", runner_group.group.name)
    return Stack(
        network, firewall, secrets, storage, database, load_balancer, server, monitoring, coordinator_name, runner_group
    )


def build_runners(
    config: StackConfig,
    network: Network,
    firewall: Firewall,
    secrets: Secrets,
    storage: Storage,
    server: Server,
    region: pulumi.Output[str],
    secret_names: list[str],
    role_policy: Callable[[list[str] | None], pulumi.Output[str]],
) -> tuple[CoordinatorName, RunnerGroup]:
    """Multi-machine mode: the coordinator's private name and the runners, which register with it."""
    name = config.name
    coordinator_name = CoordinatorName(
        name, CoordinatorNameArgs(vpc_id=network.vpc.id, private_ip=server.instance.private_ip)
    )
    runner_secrets = [key for key in secret_names if key in RUNNER_SECRETS]
    health_group = firewall.runner_health
    if health_group is None:
        raise ValueError("the firewall has no runner health group: FirewallArgs(runners=True)")
    # A runner always has the snapshot store: it restores what the coordinator's sessions saved.
    runner_data = boot_data(
        config,
        region,
        storage,
        runner_secrets,
        instance_type=config.runner_instance_type,
        snapshots=True,
        role="runner",
        server_url=coordinator_name.url,
    )
    runner_group = RunnerGroup(
        f"{name}-runners",
        RunnerGroupArgs(
            count=config.runner_count,
            min_size=config.runner_min,
            max_size=config.runner_max,
            instance_type=config.runner_instance_type,
            vpc_id=network.vpc.id,
            subnet_ids=[s.id for s in network.private_subnets],
            security_group_id=firewall.runner.id,
            health_security_group_id=health_group.id,
            kms_key_arn=secrets.key.arn,
            policy=role_policy(runner_secrets),
            user_data=runner_data,
            disk_gb=config.runner_disk_gb,
        ),
        opts=pulumi.ResourceOptions(depends_on=[secrets, storage, server, coordinator_name]),
    )
    return coordinator_name, runner_group


def boot_data(
    config: StackConfig,
    region: pulumi.Output[str],
    storage: Storage,
    secret_parameters: list[str],
    *,
    instance_type: str,
    snapshots: bool,
    data_volume_id: pulumi.Output[str] | None = None,
    role: Role = "server",
    coordinator: bool = False,
    server_url: str | None = None,
) -> pulumi.Output[str]:
    """An instance's user data, the server's or a runner's: one place that names the bucket, the parameter prefix,
    the log group and the metrics namespace, so the two roles cannot drift apart."""
    name = config.name
    # A None volume (a runner's) goes through Output.all as a known None, so both roles share one apply.
    return pulumi.Output.all(region, storage.bucket.bucket, storage.artifact.key, data_volume_id).apply(
        lambda a: user_data(
            BootArgs(
                region=a[0],
                bucket=a[1],
                archive_key=a[2],
                parameter_prefix=f"/ash/{name}",
                secret_parameters=secret_parameters,
                data_volume_id=a[3],
                log_group=f"/ash/{name}",
                metrics_namespace=f"Ash/{name}",
                arch=architecture(instance_type),
                snapshot_url=f"s3://{a[1]}/snapshots" if snapshots else None,
                settings=config.settings,
                runtime=config.runtime,
                role=role,
                coordinator=coordinator,
                server_url=server_url,
            )
        )
    )
