"""Cloud Monitoring: alert policies for the server being down (an uptime check of https://<domain>/health), its disks
(data and boot) filling up and its memory running out (both from the Ops Agent), sent to the stack's notification
channels: an e-mail channel made from ash:alarmEmail and/or existing channels from ash:notificationChannels."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

# The Ops Agent's `device` label, on SCSI (e2, n2: the default) and NVMe (c3, n4...) machine types: the boot disk's
# root partition, and the data disk, formatted whole (the startup script puts ext4 on google-ash-data itself).
BOOT_DEVICE = r"(/dev/)?(sda1|nvme0n1p1)"
DATA_DEVICE = r"(/dev/)?(sdb|nvme0n2)"
DISK_PERCENT = 90
MEMORY_PERCENT = 90


@dataclass
class MonitoringArgs:
    project: str
    domain: str
    instance_prefix: str  # the VMs' names start with it (the server's group and, with runners, theirs)
    alarm_email: str | None = None
    notification_channels: list[str] = field(default_factory=list)  # full names of existing channels


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        channels: list[pulumi.Input[str]] = list(args.notification_channels)
        if args.alarm_email:
            email = gcp.monitoring.NotificationChannel(
                f"{name}-alarm-email",
                display_name=f"Ash {name} alarms",
                type="email",
                labels={"email_address": args.alarm_email},
                opts=child,
            )
            channels.insert(0, email.name)  # projects/<project>/notificationChannels/<id>
        if not channels:
            pulumi.log.warn(
                "no ash:alarmEmail or ash:notificationChannels: the alert policies are created but notify nobody"
            )
        self.channels = channels

        # Server down, seen from outside: an uptime check of the public /health through DNS, the certificate and the
        # load balancer. Not the group's health check: it has no metric in Cloud Monitoring, and the autohealing it
        # drives re-creates the VM without telling anyone; a failing uptime check is what clients see.
        self.uptime_check = gcp.monitoring.UptimeCheckConfig(
            f"{name}-health",
            display_name=f"Ash {name} /health",
            timeout="10s",
            period="60s",
            http_check=gcp.monitoring.UptimeCheckConfigHttpCheckArgs(
                path="/health",
                port=443,
                use_ssl=True,
                validate_ssl=True,
                accepted_response_status_codes=[
                    gcp.monitoring.UptimeCheckConfigHttpCheckAcceptedResponseStatusCodeArgs(
                        status_class="STATUS_CLASS_2XX"
                    )
                ],
            ),
            monitored_resource=gcp.monitoring.UptimeCheckConfigMonitoredResourceArgs(
                type="uptime_url", labels={"project_id": args.project, "host": args.domain}
            ),
            opts=child,
        )
        check_filter = self.uptime_check.uptime_check_id.apply(
            lambda check_id: (
                'metric.type="monitoring.googleapis.com/uptime_check/check_passed" AND resource.type="uptime_url" '
                f'AND metric.label.check_id="{check_id}"'
            )
        )
        # Google's own recipe for uptime alerts: count the failing checker locations; more than one is an outage,
        # one alone is that location's network.
        down = gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=check_filter,
            comparison="COMPARISON_GT",
            threshold_value=1,
            duration="60s",
            trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
            aggregations=[
                gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                    alignment_period="1200s",
                    per_series_aligner="ALIGN_NEXT_OLDER",
                    cross_series_reducer="REDUCE_COUNT_FALSE",
                    group_by_fields=["resource.label.*"],
                )
            ],
        )
        vms = f'resource.type="gce_instance" AND metadata.system_labels.name=starts_with("{args.instance_prefix}")'

        def agent(metric: str, extra: str, percent: int) -> gcp.monitoring.AlertPolicyConditionConditionThresholdArgs:
            """An Ops Agent percentage above `percent` for 5 minutes, on any of the stack's VMs."""
            return gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                filter=f'metric.type="agent.googleapis.com/{metric}" AND {vms} AND metric.label.state="used"{extra}',
                comparison="COMPARISON_GT",
                threshold_value=percent,
                duration="300s",
                trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
                aggregations=[
                    gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                        alignment_period="300s", per_series_aligner="ALIGN_MEAN"
                    )
                ],
            )

        def device(pattern: str) -> str:
            return f' AND metric.label.device=monitoring.regex.full_match("{pattern}")'

        conditions = {
            "server-down": ("The server's /health fails from more than one location", down, "CRITICAL"),
            "data-disk": (
                f"The data disk (/var/lib/ash: sessions, agents) is more than {DISK_PERCENT}% full",
                agent("disk/percent_used", device(DATA_DEVICE), DISK_PERCENT),
                "ERROR",
            ),
            "boot-disk": (
                f"A boot disk (the system; a runner's sessions) is more than {DISK_PERCENT}% full",
                agent("disk/percent_used", device(BOOT_DEVICE), DISK_PERCENT),
                "ERROR",
            ),
            "memory": (
                f"A VM has used more than {MEMORY_PERCENT}% of its memory for 5 minutes",
                agent("memory/percent_used", "", MEMORY_PERCENT),
                "WARNING",
            ),
        }
        self.policies = {
            key: gcp.monitoring.AlertPolicy(
                f"{name}-{key}",
                display_name=f"Ash {name}: {key}",
                combiner="OR",
                severity=severity,
                conditions=[gcp.monitoring.AlertPolicyConditionArgs(display_name=text, condition_threshold=threshold)],
                notification_channels=channels,
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                    content=f"{text}. Runbook: docs/self-hosting/gcp.md (Alerts).", mime_type="text/markdown"
                ),
                opts=child,
            )
            for key, (text, threshold, severity) in conditions.items()
        }
        self.register_outputs({"uptimeCheck": self.uptime_check.uptime_check_id})
