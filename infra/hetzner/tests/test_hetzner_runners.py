"""infra/hetzner with runners (ash:runnerCount > 0) and a floating IP, under Pulumi's mocks; its config's refusals;
shellcheck over the scripts it renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from hetzner_mocks import (
    CONFIG,
    EVERY_SECRET,
    RUNNER_CONFIG,
    SECRET_STORES,
    SERVER_IPV4,
    HetznerMocks,
    connection,
    user_data,
)
from stack_support import assert_refused, assert_shellcheck_passes, common_refusals
from tests.support.boot_scripts import env_args


def test_config_errors_are_clear() -> None:
    from ash_hetzner.config import load_config

    without = {k: v for k, v in CONFIG.items() if k != "ash:sshAllowedCidrs"}
    refused = [
        *common_refusals(RUNNER_CONFIG),
        ({"ash:sshAllowedCidrs": json.dumps(["0.0.0.0/0"])}, "never open to the whole internet"),
        ({"ash:sshAllowedCidrs": json.dumps(["::/0"])}, "never open to the whole internet"),
        ({"ash:sshAllowedCidrs": json.dumps(["not-a-network"])}, "is not a network"),
        ({"ash:sshAllowedCidrs": "[]"}, "non-empty list"),
        ({"ash:serverType": "cx22"}, "serverType cx22 is too small: use cpx31"),
        ({**RUNNER_CONFIG, "ash:runnerServerType": "cpx21"}, "runnerServerType cpx21 is too small"),
        ({"ash:databaseServerType": "cx11"}, "databaseServerType cx11 is too small"),
        ({"ash:location": "mars1"}, "ash:location must be one of fsn1"),
        ({"ash:objectStorageLocation": "ash"}, "objectStorageLocation must be one of fsn1, nbg1, hel1"),
        ({"ash:bucket": "Not_A_Bucket"}, "is not a bucket name"),
        ({"ash:dnsZone": "example.org"}, "ash:domain ash.example.com is not in ash:dnsZone example.org"),
        ({"ash:dataVolumeGb": "5"}, "at least 10"),
        ({"ash:modelProvider": "bedrock"}, "ash:modelProvider must be anthropic"),
    ]
    assert_refused(load_config, CONFIG, refused)
    for key, message in (
        ("ash:bucket", "ash:bucket is required"),
        ("ash:s3SecretKey", "pulumi config set --secret ash:s3SecretKey"),
        ("ash:sshPrivateKey", "pulumi config set --secret ash:sshPrivateKey"),
    ):
        assert_refused(load_config, {k: v for k, v in CONFIG.items() if k != key}, [({}, message)])
    assert_refused(load_config, without, [({}, "ash:sshAllowedCidrs must be a non-empty list")])
    pulumi.runtime.set_all_config(RUNNER_CONFIG, secret_keys=list(EVERY_SECRET))
    config = load_config()
    assert config.runner_count == 2 and config.runner_server_type == "cpx41" and config.floating_ip


def test_runners_register_with_the_coordinator_and_admit_nothing_publicly(hetzner_runners: HetznerMocks) -> None:
    servers = {r.name: r.inputs for r in hetzner_runners.of("hcloud:index/server:Server")}
    assert set(servers) == {"ash-test", "ash-test-db", "ash-test-runner-0", "ash-test-runner-1"}
    runner_fw = int(hetzner_runners.one("hcloud:index/firewall:Firewall", "ash-test-runner").id)
    for i in (0, 1):
        runner = servers[f"ash-test-runner-{i}"]
        assert runner["firewallIds"] == [runner_fw] and runner["serverType"] == "cpx41"
        assert runner["networks"][0]["ip"] == f"10.44.1.{100 + i}"
    script = user_data(hetzner_runners, "ash-test-runner-0")
    settings, secrets = env_args(script)
    assert settings["ASH_MODE"] == "runner" and settings["ASH_RUNNER_PORT"] == "4200"
    assert settings["ASH_SERVER_URL"] == "http://10.44.1.10:4100"
    assert settings["ASH_SNAPSHOT_URL"] == "s3://ash-test-bucket/snapshots"
    # Its own id and address from the metadata service: a new runner registers by itself.
    assert settings["ASH_RUNNER_ID"] == "$instance_id" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"
    assert 'instance_id=$(curl -fsS "$metadata_url/instance-id")' in script
    assert "metadata_url=http://169.254.169.254/hetzner/v1/metadata" in script
    assert "install-ash.sh /opt/ash/src postgres,s3 ash-runner gvisor\n" in script and "scsi-0HC_Volume" not in script
    assert "ASH_API_KEY" not in secrets and secrets["ASH_INTERNAL_SECRET"] == "internal-secret"
    coordinator, _ = env_args(user_data(hetzner_runners))
    assert coordinator["ASH_MODE"] == "coordinator"
    for i in (0, 1):
        delivery = hetzner_runners.one("command:remote:Command", f"ash-test-runner-{i}-secrets").inputs
        reach = connection(hetzner_runners, f"ash-test-runner-{i}-secrets")
        assert reach["host"] == f"10.44.1.{100 + i}" and reach["proxy"]["host"] == SERVER_IPV4
        assert "api-key" not in json.loads(delivery["stdin"]["value"])
    assert hetzner_runners.holding(EVERY_SECRET.values(), stores=SECRET_STORES) == []


def test_the_floating_ip_is_assigned_to_the_server_and_claimed_on_it(hetzner_runners: HetznerMocks) -> None:
    floating = hetzner_runners.one("hcloud:index/floatingIp:FloatingIp")
    assert floating.inputs["type"] == "ipv4" and floating.inputs["homeLocation"] == "fsn1"
    assignment = hetzner_runners.one("hcloud:index/floatingIpAssignment:FloatingIpAssignment").inputs
    assert assignment["floatingIpId"] == int(floating.id)
    assert assignment["serverId"] == int(hetzner_runners.one("hcloud:index/server:Server", "ash-test").id)
    claim = hetzner_runners.one("command:remote:Command", "ash-test-floating-ip").inputs["create"]
    assert "ip address replace 198.51.100.99/32 dev eth0" in claim


def test_the_scripts_pass_shellcheck(tmp_path: Path) -> None:
    from ash_hetzner.boot import BootArgs, user_data
    from ash_hetzner.dbboot import DatabaseBootArgs, database_user_data

    common: dict[str, Any] = {
        "release_path": "/opt/ash-release-0.zip",
        "s3_endpoint": "https://fsn1.your-objectstorage.com",
        "s3_region": "fsn1",
        "snapshot_url": "s3://b/snapshots",
        "settings": {"ASH_MAX_SANDBOXES": "20"},
    }
    scripts = {
        "standalone": user_data(BootArgs(**common, secret_names=["api-key"], data_volume_id="1")),
        "runner": user_data(
            BootArgs(
                **common,
                secret_names=["internal-secret"],
                data_volume_id=None,
                role="runner",
                server_url="http://10.44.1.10:4100",
            )
        ),
        "database": database_user_data(
            DatabaseBootArgs(volume_id="2", subnet="10.44.1.0/24", bucket="b", endpoint="https://e", region="fsn1")
        ),
    }
    assert_shellcheck_passes(scripts, tmp_path)
