"""Cloud SQL for PostgreSQL on a private IP only: TLS required, automated backups with point-in-time recovery,
deletion protection."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_gcp as gcp


@dataclass
class DatabaseArgs:
    region: str
    network_id: pulumi.Input[str]
    password: pulumi.Input[str]
    depends_on: list[pulumi.Resource]
    tier: str = "db-custom-2-7680"
    high_availability: bool = False
    backup_retention_days: int = 7
    deletion_protection: bool = True


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.instance = gcp.sql.DatabaseInstance(
            name,
            database_version="POSTGRES_16",
            region=args.region,
            deletion_protection=args.deletion_protection,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=args.tier,
                availability_type="REGIONAL" if args.high_availability else "ZONAL",
                disk_autoresize=True,
                deletion_protection_enabled=args.deletion_protection,
                ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                    ipv4_enabled=False,
                    private_network=args.network_id,
                    ssl_mode="ENCRYPTED_ONLY",
                ),
                backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                    enabled=True,
                    point_in_time_recovery_enabled=True,
                    start_time="03:00",
                    backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                        retained_backups=args.backup_retention_days
                    ),
                ),
                maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(day=7, hour=4),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        gcp.sql.Database(name, name="ash", instance=self.instance.name, opts=child)
        gcp.sql.User(name, name="ash", instance=self.instance.name, password=args.password, opts=child)
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(self.instance.private_ip_address, args.password).apply(
                lambda parts: f"postgresql://ash:{quote(str(parts[1]), safe='')}@{parts[0]}:5432/ash?ssl=require"
            )
        )
        self.register_outputs({"privateIp": self.instance.private_ip_address})
