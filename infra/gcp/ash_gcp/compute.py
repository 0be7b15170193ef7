"""The instances: a service account with least privilege, an instance template (Debian 12, Shielded VM, no external
address, OS Login) and a managed instance group of one server whose data disk survives re-creation (stateful disk),
healed when /health fails, snapshotted daily; and the runner group for multi-machine mode (ash:runnerCount > 0),
regional and autohealed, with a service account of its own."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
from ash_infra.boot import API_PORT, RUNNER_PORT

from .network import RUNNER_TAG, SERVER_TAG

IMAGE = "debian-cloud/debian-12"
DATA_DEVICE = "ash-data"


def service_account(
    name: str, project: str, roles: list[str], opts: pulumi.ResourceOptions
) -> gcp.serviceaccount.Account:
    account = gcp.serviceaccount.Account(name, account_id=name[:30], display_name=f"Ash {name} instances", opts=opts)
    for role in roles:
        gcp.projects.IAMMember(
            f"{name}-{role.split('/')[-1]}",
            project=project,
            role=role,
            member=account.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=opts,
        )
    return account


@dataclass(kw_only=True)
class TemplateArgs:
    """What the server's group and the runners' both take: their zone and what their instance template is made of."""

    zone: str
    machine_type: str
    subnet_id: pulumi.Input[str]
    account_email: pulumi.Input[str]
    startup_script: pulumi.Input[str]


def instance_template(
    name: str,
    args: TemplateArgs,
    *,
    tag: str,
    data_disk_gb: int | None,
    opts: pulumi.ResourceOptions,
    boot_disk_gb: int = 30,
    network_ip: pulumi.Input[str] | None = None,
    data_disk_policy: pulumi.Input[str] | None = None,
) -> gcp.compute.InstanceTemplate:
    disks = [
        gcp.compute.InstanceTemplateDiskArgs(source_image=IMAGE, boot=True, auto_delete=True, disk_size_gb=boot_disk_gb)
    ]
    if data_disk_gb:
        disks.append(
            gcp.compute.InstanceTemplateDiskArgs(
                device_name=DATA_DEVICE,
                disk_type="pd-balanced",
                disk_size_gb=data_disk_gb,
                auto_delete=False,
                boot=False,
                resource_policies=data_disk_policy,  # the snapshot schedule (one policy per disk at most)
            )
        )
    return gcp.compute.InstanceTemplate(
        name,
        name_prefix=f"{name}-",
        machine_type=args.machine_type,
        tags=[tag],
        disks=disks,
        # No access_configs: no external address. Outbound traffic goes through Cloud NAT.
        network_interfaces=[
            gcp.compute.InstanceTemplateNetworkInterfaceArgs(subnetwork=args.subnet_id, network_ip=network_ip)
        ],
        service_account=gcp.compute.InstanceTemplateServiceAccountArgs(
            email=args.account_email, scopes=["cloud-platform"]
        ),
        shielded_instance_config=gcp.compute.InstanceTemplateShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
        ),
        metadata={"enable-oslogin": "TRUE", "block-project-ssh-keys": "true"},
        metadata_startup_script=args.startup_script,
        opts=opts,
    )


def snapshot_schedule(
    name: str, *, zone: str, retention_days: int, opts: pulumi.ResourceOptions
) -> gcp.compute.ResourcePolicy:
    """Daily snapshots of the data disk (sessions, agents), kept `retention_days`: what the AWS stack does with Data
    Lifecycle Manager. The policy is named in the template's data disk, so the disk the group creates carries it. A
    disk made before the policy existed keeps none (a stateful disk is kept as it is): docs/self-hosting/gcp.md."""
    return gcp.compute.ResourcePolicy(
        f"{name}-snapshots",
        region=zone.rsplit("-", 1)[0],  # the disk's region
        description=f"Daily snapshots of the {name} data disk",
        snapshot_schedule_policy=gcp.compute.ResourcePolicySnapshotSchedulePolicyArgs(
            schedule=gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleArgs(
                daily_schedule=gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleDailyScheduleArgs(
                    days_in_cycle=1, start_time="02:00"
                )
            ),
            retention_policy=gcp.compute.ResourcePolicySnapshotSchedulePolicyRetentionPolicyArgs(
                max_retention_days=retention_days,
                # A deleted disk's snapshots are what a restore needs: they expire on schedule, not with the disk.
                on_source_disk_delete="KEEP_AUTO_SNAPSHOTS",
            ),
            snapshot_properties=gcp.compute.ResourcePolicySnapshotSchedulePolicySnapshotPropertiesArgs(
                labels={"ash-stack": name}
            ),
        ),
        opts=opts,
    )


@dataclass(kw_only=True)
class ServerArgs(TemplateArgs):
    project: str
    data_disk_gb: int = 100
    snapshot_retention_days: int = 14
    # Multi-machine mode: the coordinator's reserved internal address (a group of one VM can use a fixed address).
    network_ip: pulumi.Input[str] | None = None


class Server(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.health_check = gcp.compute.HealthCheck(
            name,
            check_interval_sec=15,
            timeout_sec=5,
            healthy_threshold=2,
            unhealthy_threshold=3,
            http_health_check=gcp.compute.HealthCheckHttpHealthCheckArgs(port=API_PORT, request_path="/health"),
            opts=child,
        )
        self.snapshots = snapshot_schedule(
            name, zone=args.zone, retention_days=args.snapshot_retention_days, opts=child
        )
        self.template = instance_template(
            name,
            args,
            tag=SERVER_TAG,
            data_disk_gb=args.data_disk_gb,
            opts=child,
            network_ip=args.network_ip,
            data_disk_policy=self.snapshots.id,
        )
        # One server (standalone or coordinator); the group re-creates it when /health fails, keeping its data disk.
        self.group = gcp.compute.InstanceGroupManager(
            name,
            base_instance_name=name,
            zone=args.zone,
            target_size=1,
            versions=[gcp.compute.InstanceGroupManagerVersionArgs(instance_template=self.template.self_link_unique)],
            named_ports=[gcp.compute.InstanceGroupManagerNamedPortArgs(name="api", port=API_PORT)],
            auto_healing_policies=gcp.compute.InstanceGroupManagerAutoHealingPoliciesArgs(
                health_check=self.health_check.id, initial_delay_sec=600
            ),
            stateful_disks=[
                gcp.compute.InstanceGroupManagerStatefulDiskArgs(device_name=DATA_DEVICE, delete_rule="NEVER")
            ],
            update_policy=gcp.compute.InstanceGroupManagerUpdatePolicyArgs(
                type="PROACTIVE",
                minimal_action="REPLACE",
                replacement_method="RECREATE",
                max_surge_fixed=0,
                max_unavailable_fixed=1,
            ),
            opts=child,
        )
        self.register_outputs({"group": self.group.instance_group})


@dataclass(kw_only=True)
class RunnerGroupArgs(TemplateArgs):
    count: int
    disk_gb: int = 100  # the boot disk: the system, Ash and the sessions this runner holds


class RunnerGroup(pulumi.ComponentResource):
    """Runners for multi-machine mode (`ash runner`): a regional managed instance group of VMs without external
    address, spread over the region's zones, that heals itself: a runner whose /health on the runner port fails
    (Google's health checkers are let in on that port only, network.py) is re-created, and the new VM registers with
    the coordinator by itself (its id and address from the metadata server); the coordinator moves the dead one's
    sessions. A new template (a new release, new settings) replaces them one at a time, a new VM before the old one
    goes: each drains at shutdown (its sessions are snapshotted and resume on another runner)."""

    def __init__(self, name: str, args: RunnerGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:RunnerGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        template = instance_template(
            name,
            args,
            tag=RUNNER_TAG,
            data_disk_gb=None,
            opts=child,
            boot_disk_gb=args.disk_gb,
        )
        self.template = template
        self.health_check = gcp.compute.HealthCheck(
            name,
            check_interval_sec=15,
            timeout_sec=5,
            healthy_threshold=2,
            unhealthy_threshold=4,  # a minute of failures: a busy runner is not a dead one
            http_health_check=gcp.compute.HealthCheckHttpHealthCheckArgs(port=RUNNER_PORT, request_path="/health"),
            opts=child,
        )
        self.group = gcp.compute.RegionInstanceGroupManager(
            name,
            base_instance_name=name,
            region=args.zone.rsplit("-", 1)[0],
            target_size=args.count,
            versions=[gcp.compute.RegionInstanceGroupManagerVersionArgs(instance_template=template.self_link_unique)],
            auto_healing_policies=gcp.compute.RegionInstanceGroupManagerAutoHealingPoliciesArgs(
                health_check=self.health_check.id,
                initial_delay_sec=600,  # the boot installs Ash first
            ),
            # A regional group surges by whole zones: up to three new VMs before old ones go, none unavailable.
            update_policy=gcp.compute.RegionInstanceGroupManagerUpdatePolicyArgs(
                type="PROACTIVE", minimal_action="REPLACE", max_surge_fixed=3, max_unavailable_fixed=0
            ),
            opts=child,
        )
        self.register_outputs({"group": self.group.instance_group})
