"""infra/gcp with runners (ash:runnerCount > 0), under Pulumi's mocks: the coordinator on a reserved address, the
runners' group, their firewall rules and service account."""

from __future__ import annotations

import json

import pulumi
from gcp_mocks import (
    CONFIG,
    COORDINATOR_IP,
    RUNNER_CONFIG,
    RUNNER_SA,
    SECRET_STORES,
    SERVER_SA,
    GcpMocks,
    startup_script,
)
from pulumi.runtime import rpc
from stack_support import ALL_SECRETS, INTERNAL_SECRET, assert_refused, common_refusals
from tests.support.boot_scripts import env_args


def test_config_accepts_runners_and_refuses_silly_values() -> None:
    from ash_gcp.config import load_config

    refused = [
        *common_refusals(RUNNER_CONFIG),
        ({"ash:runnerCount": "1"}, "pulumi config set --secret ash:internalSecret"),
        ({"ash:machineType": "e2-small"}, "small"),
        ({**RUNNER_CONFIG, "ash:runnerMachineType": "e2-medium"}, "runnerMachineType e2-medium is too small"),
        ({"ash:notificationChannels": json.dumps("123")}, "notificationChannels must be a list"),
        ({"ash:notificationChannels": json.dumps([""])}, "notificationChannels must be a list"),
        ({"ash:diskSnapshotRetentionDays": "0"}, "diskSnapshotRetentionDays must be at least 1"),
    ]
    assert_refused(load_config, CONFIG, refused)
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
    assert settings["ASH_SANDBOX_RUNTIME"] == "bwrap"  # ash:runtime's default
    assert "install-ash.sh /opt/ash/src postgres,gcs ash bwrap\n" in startup_script(gcp)


def test_with_runners_the_server_is_the_coordinator_on_a_reserved_address(gcp_runners: GcpMocks) -> None:
    script = startup_script(gcp_runners, "ash-test")
    settings, secrets = env_args(script)
    assert settings["ASH_MODE"] == "coordinator" and settings["ASH_PORT"] == "4100"
    assert secrets["ASH_INTERNAL_SECRET"] == "internal-secret"
    assert "install-ash.sh /opt/ash/src postgres,gcs ash gvisor\n" in script and "google-ash-data" in script
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
    assert settings["ASH_SANDBOX_RUNTIME"] == "gvisor"  # ash:runtime, on every runner
    assert settings["ASH_SNAPSHOT_URL"] == "gs://ash-test/snapshots"
    # Its id and address come from the metadata server at boot.
    assert settings["ASH_RUNNER_ID"] == "$instance_name" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"
    assert "metadata_url=http://metadata.google.internal/computeMetadata/v1" in script
    assert '"$metadata_url/instance/$1"' in script
    assert "instance_name=$(meta name)" in script and "private_ip=$(meta network-interfaces/0/ip)" in script
    assert "install-ash.sh /opt/ash/src postgres,gcs ash-runner gvisor\n" in script  # systemd/ash-runner.service
    assert "google-ash-data" not in script  # no data disk: sessions move through the bucket
    secrets = set(secret_names.values())
    assert secrets == {"anthropic-api-key", "credential-key", "database-url", "internal-secret"}  # no API key
    template = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test-runners").inputs
    assert template["tags"] == ["ash-runner"] and template["machineType"] == "e2-standard-4"
    assert template["serviceAccount"]["email"] == "ash-test-runner@my-project.iam.gserviceaccount.com"
    assert [d["diskSizeGb"] for d in template["disks"]] == [100]  # a boot disk, no data disk
    assert template["shieldedInstanceConfig"]["enableSecureBoot"] is True
    group = gcp_runners.one("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager").inputs
    assert group["targetSize"] == 2 and group["updatePolicy"]["type"] == "PROACTIVE"
    assert group["region"] == "europe-west1"  # spread over the region's zones


def test_the_runner_fleet_heals_itself_on_the_runner_ports_health(gcp_runners: GcpMocks) -> None:
    group = gcp_runners.one("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager", "ash-test-runners")
    check = gcp_runners.one("gcp:compute/healthCheck:HealthCheck", "ash-test-runners")
    assert group.inputs["autoHealingPolicies"] == {"healthCheck": check.id, "initialDelaySec": 600}
    assert check.inputs["httpHealthCheck"] == {"port": 4200, "requestPath": "/health"}
    # New VMs before old ones go (a regional group surges by zone), none taken down first.
    assert (
        group.inputs["updatePolicy"]["maxUnavailableFixed"] == 0 and group.inputs["updatePolicy"]["maxSurgeFixed"] == 3
    )
    template = gcp_runners.one("gcp:compute/instanceTemplate:InstanceTemplate", "ash-test-runners")
    assert group.inputs["versions"] == [{"instanceTemplate": "https://compute/ash-test-runners?uniqueId=1"}]
    assert template.inputs["tags"] == ["ash-runner"]
    # Google's checkers reach the runner port, and nothing else of the runners.
    rule = gcp_runners.one("gcp:compute/firewall:Firewall", "ash-test-health-check-to-runner").inputs
    assert rule["sourceRanges"] == ["130.211.0.0/22", "35.191.0.0/16"] and rule["targetTags"] == ["ash-runner"]
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["4200"]}]
    # A replaced VM registers by itself: its id and address come from the metadata server, not from the stack.
    settings, _ = env_args(startup_script(gcp_runners, "ash-test-runners"))
    assert settings["ASH_RUNNER_ID"] == "$instance_name" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"


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
    assert gcp_runners.holding(ALL_SECRETS.values(), stores=SECRET_STORES) == []


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
        "ash-test-health-check-to-runner",
    }
    assert all(rule["direction"] == "INGRESS" for rule in rules.values())  # no egress rule: nothing outbound denied
    to_runners = {name: rule for name, rule in rules.items() if rule["targetTags"] == ["ash-runner"]}
    assert set(to_runners) == {
        "ash-test-server-to-runner",
        "ash-test-iap-ssh-runner",
        "ash-test-health-check-to-runner",
    }
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
