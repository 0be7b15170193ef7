"""infra/hetzner's boots, for real: the user data `ash_hetzner.boot.user_data` and `ash_hetzner.dbboot` render, run
as cloud-init runs them in fresh Debian 12 containers booted with systemd, with what `pulumi up` delivers over SSH
(ash_hetzner.delivery: the release archive, then a root-only secrets file, the database password on psql's stdin)
sent the same way by `podman exec` (tests/distribution/hetzner_hosts.py), against moto on the network's gateway for
Object Storage and a fake of the metadata service for the runner's identity.

The database server and the Ash server boot side by side (each boot mostly waits on downloads). The server is the
default stack's (standalone, snapshots on): its volume a sparse file at the volume's /dev/disk/by-id path, which
`mount` attaches to a loop device, formatted and mounted at /var/lib/ash by that path with `nofail`. Its boot waits
for the release and the secrets file, writes ash.env (0600) from it and serves; a rotated API key, delivered
after cloud-init is done, runs the kept boot again and the new key is the one that works. The database server mounts
its volume the same way, holds PostgreSQL's cluster on it, takes the delivered password (it has a quote in it) over
TLS from the subnet and refuses a plain connection, and its dump job puts backups/ash-<date>.dump (a pg_dump archive)
in the bucket and deletes a dump older than the retention. Last the server boots again as the coordinator (the
stack with runners: new user data, the PostgreSQL URL with ssl=require), and a runner's boot, with its id and
private address from the metadata service, registers with it.

Not exercised, because a container is not a Hetzner machine: the volume's attachment (Hetzner's API) and a real block
device (a loop device stands in; the by-id name, the format-once check, fstab and mount are the script's own);
cloud-init itself (a stand-in `cloud-init status` answers what the deliveries ask, and the script runs as a
transient systemd service, as cloud-final.service runs it); SSH and pulumi-command (the same remote commands run
through `podman exec`; the release is copied before the boot starts, the earliest SSH can bring it); the load
balancer, the floating IP and the firewalls (Hetzner's network); unattended-upgrades' nightly run. The coordinator
is the same container booted again with the coordinator's user data, not a second new machine, to keep the stage's
time down; the runner's install reuses the server's uv download cache (a host folder both mount), which a real
runner does not have, for the same reason.
"""

from __future__ import annotations

import concurrent.futures
import json
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import httpx
import pytest

from tests.distribution.ash_client import Deployed
from tests.distribution.hetzner_hosts import RERUN, SET_PASSWORD, FakeMetadata, HetznerHost, fake_volume
from tests.distribution.podman import REPO, Host, Network
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.storage import ACCESS, REGION, S3Server

BUCKET = "ash-hetzner-boot"
SERVER_VOLUME, DATABASE_VOLUME = "101", "202"
API_KEY, ROTATED_KEY = "ash_hz_0123456789abcdef0123456789", "ash_hz_rotated_0123456789abcdef01"
PASSWORD = 'db pa\'ss-0123456789 "x" $HOME'  # a quote (sql_password doubles it), and what a shell would expand
SECRETS = {
    "api-key": API_KEY,
    "anthropic-api-key": "sk-ant-hetzner-boot-0123456789",
    "credential-key": 'credential key 0123456789 "q" $HOME `x` \\z',
    "database-url": "sqlite+aiosqlite:////var/lib/ash/ash.db",
    "s3-access-key": ACCESS["AWS_ACCESS_KEY_ID"],
    "s3-secret-key": ACCESS["AWS_SECRET_ACCESS_KEY"],
}
INTERNAL_SECRET = "internal-secret-hetzner-0123456789abcdef"
RUNNER_ID = "4242"  # the runner's Hetzner server id, from the metadata service


def hetzner() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """ash_hetzner's boot, dbboot, delivery and release modules, imported as the stack's tests import them."""
    for stack in ("hetzner", "common"):
        path = str(REPO / "infra" / stack)
        if path not in sys.path:
            sys.path.insert(0, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the provider SDKs warn about their own resources
        import ash_hetzner.boot as boot
        import ash_hetzner.dbboot as dbboot
        import ash_hetzner.delivery as delivery
        import ash_hetzner.release as release
    return boot, dbboot, delivery, release


def secrets_file(values: dict[str, str]) -> str:
    """The secrets file's text, as delivery.secrets_json makes it (sorted JSON by secret name)."""
    return json.dumps({name: values[name] for name in sorted(values)})


@pytest.fixture(scope="module")
def moto(network: Network) -> Iterator[S3Server]:
    server = S3Server(host=network.gateway).start()
    server.bucket(BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def uv_cache() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ash-hetzner-uv-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Database:
    machine: HetznerHost
    user_data: str
    booted: concurrent.futures.Future[None]

    @property
    def address(self) -> str:
        return self.machine.host.address


@pytest.fixture(scope="module")
def database(debian_image: str, network: Network, moto: S3Server) -> Iterator[Database]:
    """The database server, its boot started in the background (the server's fixture boots beside it)."""
    boot_mod, dbboot, _, _ = hetzner()
    user_data = dbboot.database_user_data(
        dbboot.DatabaseBootArgs(
            volume_id=DATABASE_VOLUME,
            subnet=f"10.{network.subnet}.0.0/24",
            bucket=BUCKET,
            endpoint=moto.endpoint,
            region=REGION,
            retention_days=7,
        )
    )
    host = Host.boot("ash-hz-db", network, debian_image)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        fake_volume(host, DATABASE_VOLUME, boot_mod.volume_device(DATABASE_VOLUME))
        machine = HetznerHost(host)
        yield Database(machine, user_data, pool.submit(machine.boot, user_data, detach=False))
    finally:
        pool.shutdown(wait=True)
        host.remove()


@dataclass
class Server:
    machine: HetznerHost
    user_data: str
    deployed: Deployed

    def status(self, key: str, path: str = "/api/agents") -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{self.deployed.url}{path}", headers=headers, timeout=10).status_code


def server_user_data(network: Network, moto: S3Server, model: FakeAnthropic, **role: object) -> str:
    boot, _, _, release = hetzner()
    _, digest = release.release_zip()
    return str(
        boot.user_data(
            boot.BootArgs(
                release_path=f"/opt/ash-release-{digest}.zip",  # as stack.py places it
                secret_names=sorted(role.pop("secret_names", SECRETS)),  # type: ignore[call-overload]
                data_volume_id=role.pop("data_volume_id", None),
                s3_endpoint=moto.endpoint,
                s3_region=REGION,
                snapshot_url=f"s3://{BUCKET}/snapshots",
                settings={"ANTHROPIC_BASE_URL": model.url},
                **role,
            )
        )
    )


def copy_release(machine: HetznerHost) -> None:
    """AshDelivery's first step, the release archive."""
    _, _, _, release = hetzner()
    archive, digest = release.release_zip()
    machine.copy(archive, f"/opt/ash-release-{digest}.zip")


def deliver_ash(machine: HetznerHost, values: dict[str, str], *, release: bool = True) -> None:
    """AshDelivery: the release, then the secrets file (which runs the kept boot again once cloud-init is done)."""
    boot, _, delivery, _ = hetzner()
    if release:
        copy_release(machine)
    command = delivery.write_file(boot.SECRETS_FILE, then=RERUN.format(boot=shlex.quote(boot.BOOT_COPY)))
    machine.deliver(command, secrets_file(values))


@pytest.fixture(scope="module")
def server(
    debian_image: str, network: Network, model: FakeAnthropic, moto: S3Server, database: Database, uv_cache: Path
) -> Iterator[Server]:
    boot, _, _, _ = hetzner()
    user_data = server_user_data(network, moto, model, data_volume_id=SERVER_VOLUME, cloud_machine=True)
    host = Host.boot("ash-hz-server", network, debian_image, volumes=[f"{uv_cache}:/root/.cache/uv"])
    work = Path(tempfile.mkdtemp(prefix="ash-hz-server-"))
    try:
        fake_volume(host, SERVER_VOLUME, boot.volume_device(SERVER_VOLUME))
        machine = HetznerHost(host)
        # The worst order: SSH answers (and the release is copied) before cloud-init has started the boot script.
        copy_release(machine)
        machine.boot(user_data, detach=True)
        deliver_ash(machine, SECRETS, release=False)
        deployed = Deployed(f"http://{host.address}:4100", API_KEY, work / "home")
        deployed.home.mkdir(parents=True)
        yield Server(machine, user_data, deployed)
    finally:
        host.remove()
        shutil.rmtree(work, ignore_errors=True)


def test_server_boot_serves_with_the_delivered_secrets(server: Server) -> None:
    boot, _, _, _ = hetzner()
    machine, host = server.machine, server.machine.host
    log = machine.wait_log("ash boot: done")
    assert server.deployed.wait_healthy()["status"] == "ok", machine.diagnose()
    assert host.unit_state("ash") == "active"
    # No secret in the user data (Hetzner serves it to every process on the machine), nor in the boot's log.
    assert not any(value in server.user_data or value in log for value in SECRETS.values())
    modes = host.sh(f"stat -c '%U %a' {boot.SECRETS_FILE} /etc/ash/ash.env /etc/ash").stdout.split("\n")
    assert modes[:3] == ["root 600", "root 600", "root 700"], modes
    environment = host.sh("tr '\\0' '\\n' </proc/$(systemctl show -p MainPID --value ash)/environ").stdout
    assert f"ASH_CREDENTIAL_KEY={SECRETS['credential-key']}\n" in environment
    assert "ASH_S3_ENDPOINT_URL=http://10." in environment and "AWS_SECRET_ACCESS_KEY=test-secret-key\n" in environment
    # The data volume: mounted at the data dir from the file at its by-id path, named by that path in fstab.
    device = boot.volume_device(SERVER_VOLUME)
    assert machine.backing_file("/var/lib/ash") == device
    assert f"{device} /var/lib/ash ext4 defaults,nofail 0 2" in host.sh("cat /etc/fstab").stdout
    assert host.unit_state("fail2ban") == "active"
    assert server.status(API_KEY) == 200
    assert server.status("ash_hz_not_the_key_0123456789abcdef") == 401


def test_a_rotated_key_runs_the_boot_again_and_the_new_key_works(server: Server) -> None:
    host = server.machine.host
    server.machine.wait_log("ash boot: done")
    server.deployed.api_key = ROTATED_KEY
    main_pid = "systemctl show -p MainPID --value ash"
    before = host.sh(main_pid).stdout.strip()
    assert server.status(ROTATED_KEY) == 401
    server.machine.cloud_init("done")  # cloud-init has finished: the delivery runs the kept boot itself
    deliver_ash(server.machine, {**SECRETS, "api-key": ROTATED_KEY})
    log = server.machine.wait_log("ash boot: done", count=2)  # the delivery returned after the boot's second run
    assert ROTATED_KEY not in log
    server.deployed.wait_healthy()
    assert host.sh(main_pid).stdout.strip() != before  # restarted with the new ash.env
    environment = host.sh(f"tr '\\0' '\\n' </proc/$({main_pid})/environ").stdout
    assert f"ASH_API_KEY={ROTATED_KEY}\n" in environment
    assert server.status(ROTATED_KEY) == 200, server.machine.diagnose()
    # The old key is still registered (as on every path: hetzner.md says to revoke it with DELETE /api/api-keys).
    assert server.status(API_KEY) == 200


def psql(database: Database, sslmode: str, password: str) -> tuple[int, str]:
    """A login as `ash` from the subnet (the machine's own private address, not the local socket)."""
    conninfo = f"host={database.address} dbname=ash user=ash sslmode={sslmode}"
    query = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
    result = database.machine.host.sh(
        f'PGPASSWORD="$P" psql -X -At {shlex.quote(conninfo)} -c {shlex.quote(query)}', check=False, env={"P": password}
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def test_database_boot_mounts_its_volume_takes_the_password_over_tls_and_dumps(
    database: Database, moto: S3Server
) -> None:
    boot, dbboot, delivery, _ = hetzner()
    database.booted.result(timeout=1200)
    machine, host = database.machine, database.machine.host
    assert "ash boot: done" in machine.log()
    device = boot.volume_device(DATABASE_VOLUME)
    assert machine.backing_file("/var/lib/postgresql") == device
    assert f"{device} /var/lib/postgresql ext4 defaults,nofail 0 2" in host.sh("cat /etc/fstab").stdout
    cluster = host.sh("runuser -u postgres -- psql -XAt -c 'show data_directory'").stdout.strip()
    assert host.sh(f"findmnt -no TARGET -T {cluster}").stdout.strip() == "/var/lib/postgresql"

    machine.deliver(SET_PASSWORD, delivery.sql_password(PASSWORD))  # DatabaseDelivery's password step
    assert psql(database, "require", PASSWORD) == (0, "ash|t")
    code, output = psql(database, "disable", PASSWORD)
    assert code != 0 and "no pg_hba.conf entry" in output, output
    code, output = psql(database, "require", "not the password")
    assert code != 0 and "password authentication failed" in output, output

    assert host.sh("systemctl is-enabled ash-pg-dump.timer; systemctl is-active ash-pg-dump.timer").stdout.split() == [
        "enabled",
        "active",
    ]
    s3 = moto.client()
    s3.put_object(Bucket=BUCKET, Key="backups/ash-2000-01-01.dump", Body=b"old")  # past the retention
    keys = f"AWS_ACCESS_KEY_ID={ACCESS['AWS_ACCESS_KEY_ID']}\nAWS_SECRET_ACCESS_KEY={ACCESS['AWS_SECRET_ACCESS_KEY']}\n"
    machine.deliver(delivery.write_file(dbboot.BACKUP_ENV), keys)  # DatabaseDelivery's backup keys
    assert host.sh(f"stat -c '%U %a' {dbboot.BACKUP_ENV}").stdout.strip() == "root 600"
    ran = host.sh("systemctl start ash-pg-dump.service", check=False)
    assert ran.returncode == 0, host.journal("ash-pg-dump", 30)
    today = host.sh("date -u +%F").stdout.strip()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="backups/").get("Contents", [])]
    assert listed == [f"backups/ash-{today}.dump"], listed
    dump = s3.get_object(Bucket=BUCKET, Key=f"backups/ash-{today}.dump")["Body"].read()
    assert dump.startswith(b"PGDMP"), dump[:16]  # pg_dump's custom format


def test_a_runner_boot_registers_with_the_coordinator(
    server: Server, database: Database, debian_image: str, network: Network, moto: S3Server, model: FakeAnthropic,
    uv_cache: Path,
) -> None:  # fmt: skip
    database.booted.result(timeout=1200)
    server.machine.wait_log("ash boot: done")
    # The password is set (the database test, or here when it runs alone: DatabaseDelivery runs before the others).
    _, _, delivery, _ = hetzner()
    database.machine.deliver(SET_PASSWORD, delivery.sql_password(PASSWORD))
    url = f"postgresql://ash:{quote(PASSWORD, safe='')}@{database.address}:5432/ash?ssl=require"  # as stack.py writes
    cluster = {"database-url": url, "internal-secret": INTERNAL_SECRET}
    server.deployed.api_key = ROTATED_KEY
    # The stack with runners: the server's new user data makes it the coordinator; its secrets arrive while it waits.
    machine = server.machine
    names = sorted({*SECRETS, *cluster})
    coordinator = server_user_data(
        network, moto, model, secret_names=names, coordinator=True, data_volume_id=SERVER_VOLUME, cloud_machine=True
    )
    machine.cloud_init("running")
    deliver_ash(machine, {**SECRETS, "api-key": ROTATED_KEY, **cluster})
    machine.boot(coordinator, detach=False)
    assert server.deployed.wait_healthy()["mode"] == "coordinator", machine.diagnose()

    runner_names = [n for n in names if n != "api-key"]  # stack.RUNNER_SECRETS: no API key on a runner
    with FakeMetadata(network.gateway) as metadata:
        runner_data = server_user_data(
            network, moto, model, secret_names=runner_names, role="runner",
            server_url=f"http://{machine.host.address}:4100", metadata_url=metadata.url,
        )  # fmt: skip
        host = Host.boot("ash-hz-runner", network, debian_image, volumes=[f"{uv_cache}:/root/.cache/uv"])
        try:
            metadata.machines[host.address] = (RUNNER_ID, host.address)
            runner = HetznerHost(host)
            runner.boot(runner_data, detach=True)
            deliver_ash(runner, {k: v for k, v in {**SECRETS, **cluster}.items() if k in runner_names})
            runner.wait_log("ash boot: done")
            env = host.sh("cat /etc/ash/ash.env").stdout
            assert f'ASH_RUNNER_ID="{RUNNER_ID}"' in env or f"ASH_RUNNER_ID={RUNNER_ID}" in env, env
            deadline, listed = time.monotonic() + 120, {}
            while time.monotonic() < deadline:
                response = server.deployed.get("/api/internal/runners")
                assert isinstance(response, dict)
                listed = {r["id"]: r for r in response["runners"]}
                if listed.get(RUNNER_ID, {}).get("status") == "live":
                    break
                time.sleep(2)
            assert listed.get(RUNNER_ID, {}).get("status") == "live", f"{listed}\n{runner.diagnose()}"
        finally:
            host.remove()
