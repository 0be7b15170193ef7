"""infra/gcp with Pulumi's mocks: the whole program runs (preview=False) and the security properties are asserted on
what it asked the Google provider to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest

SECRETS = {
    "ash:apiKey": "ash_test-api-key-0123456789abcdef",
    "ash:anthropicApiKey": "sk-ant-test-0123456789",
    "ash:credentialKey": "credential-key-0123456789abcdef",
    "ash:databasePassword": "db-password-0123456789abcdef",
}
CONFIG = {"gcp:project": "my-project", "gcp:region": "europe-west1", "ash:domain": "ash.example.com", **SECRETS}


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str


@dataclass
class GcpMocks(pulumi.runtime.Mocks):
    resources: list[Resource] = field(default_factory=list)

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
        elif typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            outputs["selfLinkUnique"] = f"https://compute/{args.name}?uniqueId=1"
        elif typ == "gcp:compute/instanceGroupManager:InstanceGroupManager":
            outputs["instanceGroup"] = f"https://compute/groups/{args.name}"
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
    pulumi.runtime.set_all_config(config, secret_keys=list(SECRETS))

    @pulumi.runtime.test
    def program() -> Any:
        return build()

    program()  # returns once every resource is registered
    return mocks


def build_stack() -> Any:
    from ash_gcp.config import load_config
    from ash_gcp.stack import build

    stack = build(load_config())
    return pulumi.Output.all(stack.server.group.id, stack.load_balancer.https.id)


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpMocks]:
    yield run_program(CONFIG, build_stack)


def startup_script(gcp: GcpMocks) -> str:
    template = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate")
    script: str = template.inputs["metadataStartupScript"]
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
    for name in ("api-key", "anthropic-api-key", "credential-key", "database-url"):
        assert f"$(secret {name})" in script


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


def test_config_refuses_runners_and_small_machines() -> None:
    from ash_gcp.config import ConfigError, load_config

    for extra, message in (({"ash:runnerCount": "1"}, "multi-machine"), ({"ash:machineType": "e2-small"}, "small")):
        pulumi.runtime.set_all_config({**CONFIG, **extra}, secret_keys=list(SECRETS))
        with pytest.raises(ConfigError, match=message):
            load_config()


def test_vertex_adds_only_the_vertex_user_role() -> None:
    def build() -> Any:
        from ash_gcp.config import load_config
        from ash_gcp.stack import build as build_stack_

        return build_stack_(load_config()).server.group.id

    mocks = run_program({**CONFIG, "ash:modelProvider": "vertex"}, build)
    roles = {r.inputs["role"] for r in mocks.of("gcp:projects/iAMMember:IAMMember")}
    assert roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/aiplatform.user"}


def test_runner_group_has_no_external_address() -> None:
    def build_runners() -> Any:
        from ash_gcp.compute import RunnerGroup, RunnerGroupArgs

        group = RunnerGroup(
            "runners",
            RunnerGroupArgs(
                zone="europe-west1-b",
                count=2,
                machine_type="e2-standard-4",
                subnet_id="subnet",
                account_email="sa@x",
                startup_script="#!",
            ),
        )
        return group.group.id

    mocks = run_program(CONFIG, build_runners)
    template = mocks.one("gcp:compute/instanceTemplate:InstanceTemplate").inputs
    assert template["tags"] == ["ash-runner"]
    assert not template["networkInterfaces"][0].get("accessConfigs")
    assert mocks.one("gcp:compute/instanceGroupManager:InstanceGroupManager").inputs["targetSize"] == 2
