"""Assembles the components into the stack and exports what an operator needs (docs/self-hosting/aws.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .boot import BootArgs, user_data
from .compute import Server, ServerArgs, architecture
from .config import StackConfig
from .database import Database, DatabaseArgs
from .firewall import Firewall, FirewallArgs
from .loadbalancer import LoadBalancer, LoadBalancerArgs
from .monitoring import Monitoring, MonitoringArgs
from .network import Network, NetworkArgs
from .policy import instance_policy
from .secrets import Secrets, SecretsArgs
from .source import source_archive
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


def build(config: StackConfig) -> Stack:
    name = config.name
    region = aws.get_region_output().region
    account = aws.get_caller_identity_output().account_id
    if config.model_provider == "bedrock":
        pulumi.log.warn(
            "ash:modelProvider=bedrock grants the instance role Bedrock access, but this version of the server only "
            "relays the Anthropic API (docs/security.md): keep ash:anthropicApiKey set until Bedrock support lands"
        )

    network = Network(name, NetworkArgs(cidr=config.vpc_cidr))
    firewall = Firewall(name, FirewallArgs(vpc_id=network.vpc.id, allowed_cidrs=config.allowed_cidrs))
    secrets = Secrets(name, SecretsArgs(prefix=f"/ash/{name}"))
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
    policy = pulumi.Output.all(region, account, key_arn, storage.bucket.arn).apply(
        lambda a: json.dumps(
            instance_policy(
                parameter_arn_prefix=f"arn:aws:ssm:{a[0]}:{a[1]}:parameter/ash/{name}",
                key_arn=a[2],
                bucket_arn=a[3],
                log_group_arn=f"arn:aws:logs:{a[0]}:{a[1]}:log-group:{log_group}",
                metrics_namespace=namespace,
                region=a[0],
                bedrock=config.model_provider == "bedrock",
            )
        )
    )

    def boot(volume_id: pulumi.Output[str]) -> pulumi.Output[str]:
        return pulumi.Output.all(region, storage.bucket.bucket, storage.artifact.key, volume_id).apply(
            lambda a: user_data(
                BootArgs(
                    region=a[0],
                    bucket=a[1],
                    archive_key=a[2],
                    parameter_prefix=f"/ash/{name}",
                    secret_parameters=sorted(values),
                    data_volume_id=a[3],
                    log_group=log_group,
                    metrics_namespace=namespace,
                    arch=architecture(config.instance_type),
                    snapshot_url=f"s3://{a[1]}/snapshots" if config.snapshots else None,
                    settings=config.settings,
                )
            )
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
            alb_arn_suffix=load_balancer.alb.arn_suffix,
            target_group_arn_suffix=load_balancer.target_group.arn_suffix,
            instance_id=server.instance.id,
            database_id=database.instance.identifier,
            alarm_email=config.alarm_email,
        ),
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
    return Stack(network, firewall, secrets, storage, database, load_balancer, server, monitoring)
