"""The instances: the server (a launch template, one instance in a private subnet, an encrypted data volume that
outlives it, daily snapshots of that volume) and the runner group (a launch template and an Auto Scaling group in the
private subnets, for multi-machine mode: ash:runnerCount > 0). No public address, no SSH: IMDSv2 only, Session
Manager for a shell."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from ash_infra.boot import API_PORT, RUNNER_PORT

DEBIAN_OWNER = "136693071363"  # Debian's official AMIs


def architecture(instance_type: str) -> str:
    """arm64 for Graviton families (t4g, c7g, m6gd...), amd64 otherwise."""
    family = instance_type.split(".")[0]
    return "arm64" if re.fullmatch(r"[a-z]+\d+[a-z]*g[a-z]*", family) else "amd64"


def debian_ami(arch: str) -> pulumi.Output[str]:
    return aws.ec2.get_ami_output(
        owners=[DEBIAN_OWNER],
        most_recent=True,
        filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[f"debian-12-{arch}-*"])],
    ).id


def instance_role(name: str, policy: pulumi.Input[str], opts: pulumi.ResourceOptions) -> aws.iam.InstanceProfile:
    role = aws.iam.Role(
        name,
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
        opts=opts,
    )
    aws.iam.RolePolicy(name, role=role.id, policy=policy, opts=opts)
    # A shell through Session Manager instead of SSH (no inbound port).
    aws.iam.RolePolicyAttachment(
        f"{name}-ssm",
        role=role.name,
        policy_arn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        opts=opts,
    )
    return aws.iam.InstanceProfile(name, role=role.name, opts=opts)


def launch_template(
    name: str,
    *,
    instance_type: str,
    profile: aws.iam.InstanceProfile,
    security_group_id: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str],
    user_data: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    root_volume_gb: int = 30,
) -> aws.ec2.LaunchTemplate:
    return aws.ec2.LaunchTemplate(
        name,
        image_id=debian_ami(architecture(instance_type)),
        instance_type=instance_type,
        iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
        vpc_security_group_ids=[security_group_id],
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=root_volume_gb, volume_type="gp3", encrypted="true", kms_key_id=kms_key_arn
                ),
            )
        ],
        monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
        user_data=pulumi.Output.from_input(user_data).apply(lambda s: base64.b64encode(s.encode()).decode()),
        update_default_version=True,
        opts=opts,
    )


@dataclass
class ServerArgs:
    instance_type: str
    subnet: aws.ec2.Subnet
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    policy: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    data_volume_gb: int = 100


class Server(pulumi.ComponentResource):
    """`user_data` is a function of the data volume's id: the boot script mounts that volume."""

    def __init__(
        self,
        name: str,
        args: ServerArgs,
        user_data: Callable[[pulumi.Output[str]], pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ash:aws:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.volume = aws.ebs.Volume(
            f"{name}-data",
            availability_zone=args.subnet.availability_zone,
            size=args.data_volume_gb,
            type="gp3",
            encrypted=True,
            kms_key_id=args.kms_key_arn,
            tags={"Name": f"{name}-data", "ash:backup": name},
            opts=child,
        )
        profile = instance_role(name, args.policy, child)
        self.launch_template = launch_template(
            name,
            instance_type=args.instance_type,
            profile=profile,
            security_group_id=args.security_group_id,
            kms_key_arn=args.kms_key_arn,
            user_data=user_data(self.volume.id),
            opts=child,
        )
        self.instance = aws.ec2.Instance(
            name,
            launch_template=aws.ec2.InstanceLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)
            ),
            subnet_id=args.subnet.id,
            associate_public_ip_address=False,
            tags={"Name": name},
            # A new release (a new launch template version) replaces the instance. Pulumi's default, create the new
            # one before deleting the old, cannot work here: the data volume is still attached to the old instance
            # and attaching it to the new one fails with VolumeInUse. Delete first; the engine then also deletes the
            # resources that are replaced with it (the volume attachment below) before the instance goes.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.data_attachment = aws.ec2.VolumeAttachment(
            f"{name}-data",
            device_name="/dev/sdf",
            volume_id=self.volume.id,
            instance_id=self.instance.id,
            # Detaching a mounted volume from a running instance hangs ("busy") or loses writes: stop the instance
            # first (a clean shutdown of the server unmounts it). The instance is on its way out when this runs.
            stop_instance_before_detaching=True,
            # Replaced whenever the instance is (its id changes), and the old attachment detached before the new one
            # is made: one volume, one attachment at a time. replace_on_changes makes the replacement explicit, so the
            # engine counts it among the instance's dependents to delete first (`pulumi up --replace` included).
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, replace_on_changes=["instanceId"]),
        )
        aws.lb.TargetGroupAttachment(
            name, target_group_arn=args.target_group_arn, target_id=self.instance.id, port=API_PORT, opts=child
        )
        self._backups(name, child)
        self.register_outputs({"instanceId": self.instance.id, "dataVolumeId": self.volume.id})

    def _backups(self, name: str, opts: pulumi.ResourceOptions) -> None:
        """Daily snapshots of the data volume, kept 14 days (Data Lifecycle Manager)."""
        role = aws.iam.Role(
            f"{name}-dlm",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            opts=opts,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-dlm",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole",
            opts=opts,
        )
        aws.dlm.LifecyclePolicy(
            name,
            description=f"Daily snapshots of the {name} data volume",
            execution_role_arn=role.arn,
            state="ENABLED",
            policy_details=aws.dlm.LifecyclePolicyPolicyDetailsArgs(
                resource_types=["VOLUME"],
                target_tags={"ash:backup": name},
                schedules=[
                    aws.dlm.LifecyclePolicyPolicyDetailsScheduleArgs(
                        name="daily",
                        create_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleCreateRuleArgs(
                            interval=24, interval_unit="HOURS", times="02:00"
                        ),
                        retain_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleRetainRuleArgs(count=14),
                        copy_tags=True,
                    )
                ],
            ),
            opts=opts,
        )


@dataclass
class RunnerGroupArgs:
    count: int  # the desired capacity
    instance_type: str
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    health_security_group_id: pulumi.Input[str]  # the health check's load balancer
    kms_key_arn: pulumi.Input[str]
    policy: pulumi.Input[str]
    user_data: pulumi.Input[str]
    min_size: int | None = None  # default: count
    max_size: int | None = None
    disk_gb: int = 100  # the root volume: the system, Ash and the sessions this runner holds


def runner_health_check(name: str, args: RunnerGroupArgs, opts: pulumi.ResourceOptions) -> aws.lb.TargetGroup:
    """A target group whose health check is a runner's /health on the runner port. A target group checks its targets
    only behind a load balancer: an internal NLB in the private subnets whose security group admits nobody, so its
    listener carries no traffic; it exists for the check, which the Auto Scaling group heeds."""
    target_group = aws.lb.TargetGroup(
        name,
        port=RUNNER_PORT,
        protocol="TCP",
        target_type="instance",
        vpc_id=args.vpc_id,
        deregistration_delay=30,
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            protocol="HTTP",
            path="/health",
            port=str(RUNNER_PORT),
            matcher="200",
            interval=15,
            healthy_threshold=2,
            unhealthy_threshold=4,  # a minute of failures: a busy runner is not a dead one
        ),
        opts=opts,
    )
    nlb = aws.lb.LoadBalancer(
        f"{name}-health",
        load_balancer_type="network",
        internal=True,
        subnets=args.subnet_ids,
        security_groups=[args.health_security_group_id],
        opts=opts,
    )
    aws.lb.Listener(
        f"{name}-health",
        load_balancer_arn=nlb.arn,
        port=RUNNER_PORT,
        protocol="TCP",
        default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
        opts=opts,
    )
    return target_group


class RunnerGroup(pulumi.ComponentResource):
    """Runners for multi-machine mode (`ash runner`): an Auto Scaling group in the private subnets, with their own
    role, that heals itself: a runner whose /health on the runner port fails (the target group's check) is replaced,
    and the new instance registers with the coordinator by itself (its id and address from the instance metadata);
    the coordinator moves the dead one's sessions. A new launch template version (a new release, new settings)
    replaces them one at a time (an instance refresh): each drains at SIGTERM (its sessions are snapshotted and
    resume on another runner)."""

    def __init__(self, name: str, args: RunnerGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:RunnerGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        profile = instance_role(name, args.policy, child)
        template = launch_template(
            name,
            instance_type=args.instance_type,
            profile=profile,
            security_group_id=args.security_group_id,
            kms_key_arn=args.kms_key_arn,
            user_data=args.user_data,
            opts=child,
            root_volume_gb=args.disk_gb,
        )
        self.launch_template = template
        self.target_group = runner_health_check(name, args, child)
        self.group = aws.autoscaling.Group(
            name,
            min_size=args.count if args.min_size is None else args.min_size,
            max_size=args.count if args.max_size is None else args.max_size,
            desired_capacity=args.count,
            vpc_zone_identifiers=args.subnet_ids,
            # The version itself (not "$Latest"), so that a new one changes the group and starts the refresh below.
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(min_healthy_percentage=50),
            ),
            target_group_arns=[self.target_group.arn],
            health_check_type="ELB",
            health_check_grace_period=600,  # the boot installs Ash first
            tags=[aws.autoscaling.GroupTagArgs(key="Name", value=name, propagate_at_launch=True)],
            opts=child,
        )
        self.register_outputs({"group": self.group.name})
