"""infra/gcp's alerting and data-disk snapshots, under Pulumi's mocks."""

from __future__ import annotations

import re
from typing import Any

from gcp_mocks import CONFIG, GcpMocks, run_program

EMAIL_CHANNEL = "projects/my-project/notificationChannels/ash-test-alarm-email"  # what the mock names it


def alert_filters(gcp: GcpMocks) -> dict[str, str]:
    """Each alert policy's (single) condition filter, by policy name."""
    policies = {r.name: r.inputs for r in gcp.of("gcp:monitoring/alertPolicy:AlertPolicy")}
    return {name: p["conditions"][0]["conditionThreshold"]["filter"] for name, p in policies.items()}


def test_alerts_for_the_server_down_its_disks_and_memory_reach_the_configured_channels(gcp: GcpMocks) -> None:
    (email,) = gcp.of("gcp:monitoring/notificationChannel:NotificationChannel")
    assert email.inputs["type"] == "email" and email.inputs["labels"] == {"email_address": "ops@example.com"}
    policies = {r.name: r.inputs for r in gcp.of("gcp:monitoring/alertPolicy:AlertPolicy")}
    assert set(policies) == {"ash-test-server-down", "ash-test-data-disk", "ash-test-boot-disk", "ash-test-memory"}
    for policy in policies.values():
        # The e-mail channel and both existing ones, the bare id made a full name in the stack's project.
        assert policy["notificationChannels"] == [
            EMAIL_CHANNEL,
            "projects/my-project/notificationChannels/123",
            "projects/other-project/notificationChannels/456",
        ]
        (condition,) = policy["conditions"]
        assert condition["conditionThreshold"]["comparison"] == "COMPARISON_GT"
    check = gcp.one("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig").inputs
    assert check["httpCheck"]["path"] == "/health" and check["httpCheck"]["port"] == 443
    assert check["httpCheck"]["useSsl"] is True and check["httpCheck"]["validateSsl"] is True
    assert check["monitoredResource"] == {
        "type": "uptime_url",
        "labels": {"project_id": "my-project", "host": "ash.example.com"},
    }
    down = policies["ash-test-server-down"]["conditions"][0]["conditionThreshold"]
    assert 'metric.type="monitoring.googleapis.com/uptime_check/check_passed"' in down["filter"]
    assert 'metric.label.check_id="ash-test-health-check"' in down["filter"]  # this check, not any
    assert down["aggregations"] == [
        {
            "alignmentPeriod": "1200s",
            "perSeriesAligner": "ALIGN_NEXT_OLDER",
            "crossSeriesReducer": "REDUCE_COUNT_FALSE",
            "groupByFields": ["resource.label.*"],
        }
    ]
    assert down["thresholdValue"] == 1  # more than one checker location failing
    filters = alert_filters(gcp)
    for key, metric in (("data-disk", "disk"), ("boot-disk", "disk"), ("memory", "memory")):
        threshold = policies[f"ash-test-{key}"]["conditions"][0]["conditionThreshold"]
        assert f'metric.type="agent.googleapis.com/{metric}/percent_used"' in filters[f"ash-test-{key}"]
        assert 'metadata.system_labels.name=starts_with("ash-test-")' in filters[f"ash-test-{key}"]
        assert 'metric.label.state="used"' in filters[f"ash-test-{key}"]
        assert threshold["thresholdValue"] == 90 and threshold["duration"] == "300s"


def test_the_disk_alerts_tell_the_data_disk_from_the_boot_disk(gcp: GcpMocks) -> None:
    filters = alert_filters(gcp)

    def device_pattern(policy: str) -> re.Pattern[str]:
        found = re.search(r'metric\.label\.device=monitoring\.regex\.full_match\("([^"]+)"\)', filters[policy])
        assert found, filters[policy]
        return re.compile(found.group(1))

    data, boot = device_pattern("ash-test-data-disk"), device_pattern("ash-test-boot-disk")
    # What the Ops Agent reports on SCSI (e2, n2) and NVMe (c3, n4) machines: the boot partition, the whole data disk.
    for name in ("sdb", "/dev/sdb", "nvme0n2", "/dev/nvme0n2"):
        assert data.fullmatch(name) and not boot.fullmatch(name), name
    for name in ("sda1", "/dev/sda1", "nvme0n1p1", "/dev/nvme0n1p1"):
        assert boot.fullmatch(name) and not data.fullmatch(name), name
    assert "device" not in filters["ash-test-memory"]


def test_the_data_disk_is_snapshotted_daily_and_kept_two_weeks(gcp: GcpMocks) -> None:
    policy = gcp.one("gcp:compute/resourcePolicy:ResourcePolicy", "ash-test-snapshots")
    assert policy.inputs["region"] == "europe-west1"  # the zone's region: where the disk is
    schedule = policy.inputs["snapshotSchedulePolicy"]
    assert schedule["schedule"] == {"dailySchedule": {"daysInCycle": 1, "startTime": "02:00"}}
    assert schedule["retentionPolicy"] == {"maxRetentionDays": 14, "onSourceDiskDelete": "KEEP_AUTO_SNAPSHOTS"}
    template = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate").inputs
    boot, data = template["disks"]
    assert data["deviceName"] == "ash-data" and data["resourcePolicies"] == policy.id  # the disk the group creates
    assert "resourcePolicies" not in boot  # the boot disk is rebuilt from the image and the release


def test_the_snapshot_retention_comes_from_config_and_runners_get_no_schedule(gcp_runners: GcpMocks) -> None:
    (policy,) = gcp_runners.of("gcp:compute/resourcePolicy:ResourcePolicy")
    assert policy.inputs["snapshotSchedulePolicy"]["retentionPolicy"]["maxRetentionDays"] == 30
    runners = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test-runners").inputs
    assert all("resourcePolicies" not in disk for disk in runners["disks"])  # sessions move through the bucket
    server = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test").inputs
    assert server["disks"][1]["resourcePolicies"] == policy.id


def test_vertex_adds_only_the_vertex_user_role() -> None:
    def build(mocks: GcpMocks) -> Any:
        from ash_gcp.config import load_config
        from ash_gcp.stack import build as build_stack_

        return build_stack_(load_config()).server.group.id

    mocks = run_program({**CONFIG, "ash:modelProvider": "vertex"}, build)
    roles = {r.inputs["role"] for r in mocks.of("gcp:projects/iAMMember:IAMMember")}
    assert roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/aiplatform.user"}
