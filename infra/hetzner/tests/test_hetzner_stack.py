"""infra/hetzner with Pulumi's mocks: the whole program runs (preview=False) and the security properties are asserted
on what it asked the hcloud and command providers to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import json

from hetzner_mocks import (
    ALLOWLIST,
    EVERY_SECRET,
    SECRET_STORES,
    SERVER_IPV4,
    HetznerMocks,
    connection,
    server_id,
    user_data,
)
from pulumi.runtime import rpc
from stack_support import SERVER_SECRETS
from tests.support.boot_scripts import env_args

SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"


def test_every_part_of_the_stack_is_declared(hetzner: HetznerMocks) -> None:
    counts: dict[str, int] = {}
    for resource in hetzner.resources:
        if resource.typ.startswith(("hcloud:", "command:")):
            counts[resource.typ.split(":")[-1]] = counts.get(resource.typ.split(":")[-1], 0) + 1
    assert counts == {
        "Network": 1,
        "NetworkSubnet": 1,
        "Firewall": 3,  # the server, the runners, the database
        "SshKey": 1,
        "Server": 2,  # the server and the database
        "Volume": 2,
        "VolumeAttachment": 2,
        "ManagedCertificate": 1,
        "LoadBalancer": 1,
        "LoadBalancerNetwork": 1,
        "LoadBalancerTarget": 1,
        "LoadBalancerService": 1,  # https; redirect_http makes the port 80 redirect
        "ZoneRrset": 2,  # A and AAAA
        "CopyToRemote": 1,  # the release
        "Command": 3,  # the server's secrets; the database's password and backup keys
    }
    subnet = hetzner.one("hcloud:index/networkSubnet:NetworkSubnet").inputs
    assert subnet == {**subnet, "ipRange": "10.44.1.0/24", "networkZone": "eu-central", "type": "cloud"}
    assert subnet["networkId"] == int(hetzner.one("hcloud:index/network:Network").id)


def test_no_firewall_rule_is_open_to_the_world_and_ssh_comes_from_the_allowlist_only(hetzner: HetznerMocks) -> None:
    firewalls = {r.name: r.inputs for r in hetzner.of(FIREWALL)}
    assert set(firewalls) == {"ash-test-server", "ash-test-runner", "ash-test-database"}
    (ssh,) = firewalls["ash-test-server"]["rules"]
    assert ssh == {**ssh, "direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ALLOWLIST}
    assert not firewalls["ash-test-runner"].get("rules") and not firewalls["ash-test-database"].get("rules")
    for rule in [rule for f in firewalls.values() for rule in f.get("rules", [])]:
        assert not {"0.0.0.0/0", "::/0"} & set(rule.get("sourceIps", [])), rule
    # Each machine behind its role's firewall; the public interface is for outbound traffic (and the server's SSH).
    fw_id = {r.name: int(r.id) for r in hetzner.of(FIREWALL)}
    servers = {r.name: r.inputs for r in hetzner.of(SERVER)}
    assert servers["ash-test"]["firewallIds"] == [fw_id["ash-test-server"]]
    assert servers["ash-test-db"]["firewallIds"] == [fw_id["ash-test-database"]]
    # What the internet reaches: the load balancer's 443, and the 80 that only redirects.
    (service,) = hetzner.of("hcloud:index/loadBalancerService:LoadBalancerService")
    assert service.inputs["listenPort"] == 443 and service.inputs["http"]["redirectHttp"] is True


def test_every_machine_is_on_the_private_network_at_its_fixed_address(hetzner: HetznerMocks) -> None:
    network = int(hetzner.one("hcloud:index/network:Network").id)
    servers = {r.name: r.inputs for r in hetzner.of(SERVER)}
    assert {name: s["networks"] for name, s in servers.items()} == {
        "ash-test": [{"networkId": network, "ip": "10.44.1.10"}],
        "ash-test-db": [{"networkId": network, "ip": "10.44.1.20"}],
    }
    key = hetzner.one("hcloud:index/sshKey:SshKey").id
    for server in servers.values():
        assert server["image"] == "debian-12" and server["location"] == "fsn1" and server["sshKeys"] == [key]
        assert server["shutdownBeforeDeletion"] is True
    assert servers["ash-test"]["serverType"] == "cpx31" and servers["ash-test-db"]["serverType"] == "cpx21"


def test_volumes_are_attached_and_mounted_by_id_with_nofail(hetzner: HetznerMocks) -> None:
    volumes = {r.name: r for r in hetzner.of("hcloud:index/volume:Volume")}
    attachments = {r.name: r.inputs for r in hetzner.of("hcloud:index/volumeAttachment:VolumeAttachment")}
    for volume, server, mount in (
        ("ash-test-data", "ash-test", "/var/lib/ash"),
        ("ash-test-db", "ash-test-db", "/var/lib/postgresql"),
    ):
        assert attachments[volume] == {
            "volumeId": int(volumes[volume].id),
            "serverId": int(server_id(hetzner, server)),
            "automount": False,
        }
        assert volumes[volume].inputs["deleteProtection"] is True
        device = f"/dev/disk/by-id/scsi-0HC_Volume_{volumes[volume].id}"
        script = user_data(hetzner, server)
        assert f"device={device}\n" in script
        assert f"{device} {mount} ext4 defaults,nofail 0 2" in script.replace("$device", device)
    assert volumes["ash-test-data"].inputs["size"] == 100 and volumes["ash-test-db"].inputs["size"] == 20


def test_the_load_balancer_serves_https_with_the_managed_certificate_to_the_private_target(
    hetzner: HetznerMocks,
) -> None:
    certificate = hetzner.one("hcloud:index/managedCertificate:ManagedCertificate")
    assert certificate.inputs["domainNames"] == ["ash.example.com"]
    service = hetzner.one("hcloud:index/loadBalancerService:LoadBalancerService").inputs
    assert service["protocol"] == "https" and service["destinationPort"] == 4100
    assert service["http"]["certificates"] == [int(certificate.id)]
    assert service["healthCheck"] == {
        **service["healthCheck"],
        "protocol": "http",
        "port": 4100,
        "http": {"path": "/health", "statusCodes": ["200"]},
    }
    target = hetzner.one("hcloud:index/loadBalancerTarget:LoadBalancerTarget").inputs
    assert target == {
        **target,
        "type": "server",
        "serverId": int(server_id(hetzner, "ash-test")),
        "usePrivateIp": True,
    }
    attached = hetzner.one("hcloud:index/loadBalancerNetwork:LoadBalancerNetwork").inputs
    assert attached["ip"] == "10.44.1.5" and attached["enablePublicInterface"] is True
    records = {r.inputs["type"]: r.inputs for r in hetzner.of("hcloud:index/zoneRrset:ZoneRrset")}
    assert records["A"]["name"] == "ash" and records["A"]["zone"] == "example.com"
    assert records["A"]["records"] == [{"value": "198.51.100.5"}]
    assert records["AAAA"]["records"] == [{"value": "2001:db8:5::1"}]


def test_no_secret_is_in_any_user_data_and_each_goes_over_ssh_as_a_pulumi_secret(hetzner: HetznerMocks) -> None:
    assert hetzner.holding(EVERY_SECRET.values(), stores=SECRET_STORES) == []
    for server in hetzner.of(SERVER):
        assert not any(secret in server.inputs["userData"] for secret in EVERY_SECRET.values()), server.name
    secrets = hetzner.one("command:remote:Command", "ash-test-secrets").inputs
    assert connection(hetzner, "ash-test-secrets")["host"] == SERVER_IPV4
    assert connection(hetzner, "ash-test-secrets")["user"] == "root"
    assert secrets["stdin"][rpc._special_sig_key] == rpc._special_secret_sig  # encrypted in the state
    delivered = json.loads(secrets["stdin"]["value"])
    assert set(delivered) == {*SERVER_SECRETS.values(), "s3-access-key", "s3-secret-key"}
    assert delivered["database-url"] == (
        "postgresql://ash:db-password-0123456789abcdef@10.44.1.20:5432/ash?ssl=require"
    )
    create = secrets["create"]
    assert create.startswith("install -d -m 0700 /etc/ash && umask 077 && cat >/etc/ash/secrets.json.partial")
    assert "mv /etc/ash/secrets.json.partial /etc/ash/secrets.json" in create
    # Then, unless the first boot is still waiting for the file (cloud-init running), the boot runs again.
    assert create.endswith(
        "if [ -e /opt/ash/boot.sh ] && ! cloud-init status 2>/dev/null | grep -q running; "
        "then bash /opt/ash/boot.sh >/dev/null; fi"
    )
    # The release first, then the secrets: the boot waits for the secrets file, and then finds the whole release.
    release = hetzner.one("command:remote:CopyToRemote", "ash-test-release").inputs
    assert f"release={release['remotePath']}" in user_data(hetzner)
    # Its folder is the image's, not one the boot makes: the copy can come before the boot script has started.
    assert release["remotePath"].startswith("/opt/ash-release-") and release["remotePath"].count("/") == 2


def test_the_boot_script_is_the_shared_one_and_reads_the_secrets_file(hetzner: HetznerMocks) -> None:
    from ash_infra.boot import PREAMBLE

    script = user_data(hetzner)
    assert script.startswith("#!/bin/bash\n# Ash on Hetzner Cloud, first boot") and PREAMBLE in script
    assert "bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src postgres,s3 ash bwrap\n" in script
    assert '/etc/ash/ash.env file \\\n  --path "$secrets"' in script
    settings, secrets = env_args(script)
    assert secrets == {**SERVER_SECRETS, "AWS_ACCESS_KEY_ID": "s3-access-key", "AWS_SECRET_ACCESS_KEY": "s3-secret-key"}
    assert "ASH_MODE" not in settings  # standalone
    assert settings["ASH_SNAPSHOT_URL"] == "s3://ash-test-bucket/snapshots"
    assert settings["ASH_S3_ENDPOINT_URL"] == "https://fsn1.your-objectstorage.com"
    assert settings["AWS_DEFAULT_REGION"] == "fsn1"


def test_the_database_is_postgresql_on_the_private_network_with_nightly_dumps(hetzner: HetznerMocks) -> None:
    script = user_data(hetzner, "ash-test-db")
    assert "apt-get install -y -q --no-install-recommends postgresql awscli" in script
    assert 'echo "hostssl ash ash $subnet scram-sha-256"' in script and "subnet=10.44.1.0/24" in script
    assert "OnCalendar=*-*-* 02:30:00 UTC" in script and "systemctl enable --now ash-pg-dump.timer" in script
    assert "s3://ash-test-bucket/backups/ash-$(date -u +%F).dump" in script
    assert 'cutoff=$(date -u -d "-7 days" +%F)' in script
    password = hetzner.one("command:remote:Command", "ash-test-db-password").inputs
    reach = connection(hetzner, "ash-test-db-password")
    assert reach["host"] == "10.44.1.20"
    assert reach["proxy"]["host"] == SERVER_IPV4  # through the server: no public SSH here
    assert password["stdin"] == {
        rpc._special_sig_key: rpc._special_secret_sig,
        "value": "ALTER ROLE ash PASSWORD 'db-password-0123456789abcdef';\n",
    }
    keys = hetzner.one("command:remote:Command", "ash-test-db-backup-keys").inputs
    assert keys["create"].endswith("mv /etc/ash/backup.env.partial /etc/ash/backup.env")
    assert "AWS_SECRET_ACCESS_KEY=s3-secret-key-0123456789abcdef" in keys["stdin"]["value"]


def test_every_machine_gets_fail2ban_and_security_upgrades_from_the_ansible_roles_files(hetzner: HetznerMocks) -> None:
    from ash_infra.source import REPO

    files = REPO / "ansible/roles/ash_hardening/files"
    jail = (files / "jail.local").read_text()
    upgrades = (files / "20auto-upgrades").read_text()
    assert "backend = systemd" in jail and 'Unattended-Upgrade "1"' in upgrades
    for server in hetzner.of(SERVER):
        script = server.inputs["userData"]
        assert f"cat >/etc/fail2ban/jail.d/ash.local <<'CONF'\n{jail}CONF\n" in script, server.name
        assert f"cat >/etc/apt/apt.conf.d/20auto-upgrades <<'CONF'\n{upgrades}CONF\n" in script, server.name
        assert "systemctl restart fail2ban" in script
