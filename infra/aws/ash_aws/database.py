"""RDS PostgreSQL in the private subnets: not publicly accessible, encrypted with the stack's key, TLS enforced,
automated backups, deletion protection, a final snapshot on delete."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_aws as aws


@dataclass
class DatabaseArgs:
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    password: pulumi.Input[str]
    instance_class: str = "db.t4g.medium"
    allocated_gb: int = 20
    multi_az: bool = False
    backup_retention_days: int = 7
    deletion_protection: bool = True


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        subnets = aws.rds.SubnetGroup(name, subnet_ids=args.subnet_ids, opts=child)
        parameters = aws.rds.ParameterGroup(
            name,
            family="postgres16",
            parameters=[aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1")],
            opts=child,
        )
        self.instance = aws.rds.Instance(
            name,
            engine="postgres",
            engine_version="16",
            instance_class=args.instance_class,
            allocated_storage=args.allocated_gb,
            max_allocated_storage=args.allocated_gb * 5,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_name="ash",
            username="ash",
            password=args.password,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[args.security_group_id],
            publicly_accessible=False,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{name}-final",
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=args.kms_key_arn,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["password"]),
        )
        # asyncpg takes ssl=require from the URL: the server's connection is encrypted, as rds.force_ssl demands.
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(self.instance.address, self.instance.port, args.password).apply(
                lambda parts: f"postgresql://ash:{quote(str(parts[2]), safe='')}@{parts[0]}:{parts[1]}/ash?ssl=require"
            )
        )
        self.register_outputs({"endpoint": self.instance.address})
