"""infra/gcp with Pulumi's mocks: the whole program runs (preview=False) and the security properties are asserted on
what it asked the Google provider to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import json

from gcp_mocks import SECRET_STORES, GcpMocks, startup_script
from stack_support import SECRETS, SERVER_SECRETS
from tests.support.boot_scripts import env_args


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
    assert secret_ids == {f"ash-test-{k}" for k in SERVER_SECRETS.values()}
    readers = gcp.of("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert len(readers) == 4 and {r.inputs["role"] for r in readers} == {"roles/secretmanager.secretAccessor"}
    script = startup_script(gcp)
    assert gcp.holding(SECRETS.values(), stores=SECRET_STORES) == []
    assert "secretmanager.googleapis.com" in script
    assert "secret_manager_url=https://secretmanager.googleapis.com/v1" in script
    _, secrets = env_args(script)
    assert secrets == SERVER_SECRETS


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
