"""The cloud boot scripts, for real: the user data infra/aws renders (`ash_aws.boot.user_data`) and the startup script
infra/gcp renders (`ash_gcp.boot.startup_script`), each run as root, as cloud-init or the guest agent would, in a
fresh Debian 12 container booted with systemd, against fakes of the cloud on the podman network's gateway.

AWS: moto in server mode stands for S3 and SSM Parameter Store (SecureString parameters under /ash/ash-boot, the
release archive the stack uploads, built by `ash_infra.source`), and credentials in the environment stand for the
instance role. GCP: tests/fakes/gcp_metadata.py stands for the metadata server's token, Cloud Storage and Secret
Manager (which has no emulator here). Each host first boots with one secret missing: the script must stop non-zero
before the install, name the secret (and its parameter or secret path) in /var/log/ash-boot.log and leave no ash.env.
Then the secret is created and the same script, run again, must install Ash (Debian packages and PyPI, a few
minutes), write ash.env (mode 0600, values intact) and start systemd/ash.service, whose /health answers inside the
host and at the host's address; on AWS an agent is deployed and a turn goes through the fake model.

Exercised: the scripts as rendered (apt packages, the archive download with --endpoint-url or the token header, the
checked secret reads of infra/boot/write-env.py, infra/boot/install-ash.sh, the unit). Not exercised, because only
a cloud machine has them (`BootArgs(cloud_machine=False)` leaves them out): the EBS volume or data disk wait, mkfs
and mount; the CloudWatch agent and the Ops Agent, which download from amazonaws.com and Google, read the instance
metadata and ship to the cloud (that they come first is a unit test of the rendered scripts in infra/*/tests); the
real IAM role and service account, KMS decryption, IMDSv2, and a runner's identity from the metadata.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.distribution.ash_client import Deployed
from tests.distribution.podman import REPO, Host, Network, podman
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gcp_metadata import FakeGoogleCloud
from tests.support.storage import ACCESS, S3Server

REGION = "us-east-1"
STACK = "ash-boot"
BUCKET = "ash-boot-bucket"
API_KEY = "ash_boot_0123456789abcdef01234567"
# Secret name -> value. The credential key carries what a careless writer of an EnvironmentFile would mangle; the
# database URL keeps SQLite on the data dir (no RDS or Cloud SQL here).
SECRETS = {
    "api-key": API_KEY,
    "anthropic-api-key": "sk-ant-cloud-boot-test-0123456789",
    "credential-key": 'credential key 0123456789 "q" $HOME `x` \\z',
    "database-url": "sqlite+aiosqlite:////var/lib/ash/ash.db",
}
MISSING = "credential-key"  # absent at the first boot
LOG = "/var/log/ash-boot.log"


def boot_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """ash_aws.boot, ash_gcp.boot and ash_infra.source, imported as the stacks' tests import them."""
    for stack in ("aws", "gcp", "common"):
        path = str(REPO / "infra" / stack)
        if path not in sys.path:
            sys.path.insert(0, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the provider SDKs warn about their own resources
        import ash_aws.boot as aws_boot
        import ash_gcp.boot as gcp_boot
        import ash_infra.source as source
    return aws_boot, gcp_boot, source


def release_archive() -> tuple[bytes, str]:
    """The zip the stacks upload (`ash_infra.source`: this checkout's package sources, unit and boot scripts)."""
    _, _, source = boot_modules()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in source.source_files():
            archive.write(path, path.relative_to(REPO).as_posix())
    _, digest = source.source_archive()
    return buffer.getvalue(), f"artifacts/ash-{digest}.zip"


@dataclass
class Boot:
    """One run of a boot script on a host: its exit status, its console output and the log it left."""

    returncode: int
    output: str
    log: str


class CloudHost:
    def __init__(self, host: Host, script: str, env: dict[str, str], work: Path) -> None:
        self.host = host
        self.env = env
        self.server = Deployed(f"http://{host.address}:4100", API_KEY, work / "home")
        self.server.home.mkdir(parents=True, exist_ok=True)
        host.put("/root/boot.sh", script, mode="0700")

    def run_boot(self, expect_failure: bool = False) -> Boot:
        result = self.host.sh("bash /root/boot.sh", check=False, timeout=1500, env=self.env)
        # The script logs through `tee` in a process substitution, which may write its last lines just after bash
        # has exited.
        deadline = time.monotonic() + 15
        marker = "ash boot: FAILED" if expect_failure else "ash boot: done"
        while True:
            log = self.host.sh(f"cat {LOG}", check=False).stdout
            if marker in log or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return Boot(result.returncode, result.stdout + result.stderr, log)

    def diagnose(self) -> str:
        status = self.host.sh("systemctl status ash --no-pager || true", check=False).stdout
        return f"{self.host.journal('ash', lines=40)}\n{status}\n--- {LOG}\n{self.host.sh(f'tail -60 {LOG}').stdout}"


def assert_failed_before_the_install(cloud: CloudHost, boot: Boot, where: str) -> None:
    assert boot.returncode != 0, boot.output[-4000:]
    assert f"cannot read secret {MISSING} ({where})" in boot.log, boot.log[-4000:]
    assert "ash boot: FAILED (exit 1)" in boot.log
    assert "ash boot: done" not in boot.log
    # No ash.env at all (not one with an empty value), no temporary file beside it, and nothing installed.
    listing = cloud.host.sh(
        "ls -A /etc/ash 2>/dev/null || true; ls /opt/ash; systemctl cat ash >/dev/null 2>&1 || echo no-unit"
    )
    assert listing.stdout.split() == ["release.zip", "src", "no-unit"], listing.stdout
    # The values that were read are not in the log (nor on the console, which tees the same lines).
    assert not any(value in boot.log or value in boot.output for value in SECRETS.values())


def assert_serves(cloud: CloudHost, boot: Boot, *, server_user: str = "ash") -> None:
    assert boot.returncode == 0, f"{boot.output[-6000:]}\n{cloud.diagnose()}"
    assert "ash boot: done" in boot.log
    assert not any(value in boot.log or value in boot.output for value in SECRETS.values())
    host = cloud.host
    inside = host.sh(
        "for i in $(seq 90); do curl -fsS http://127.0.0.1:4100/health && exit 0; sleep 1; done; exit 1", check=False
    )
    assert inside.returncode == 0, cloud.diagnose()
    assert '"status"' in inside.stdout
    assert host.unit_state("ash") == "active", cloud.diagnose()
    assert cloud.server.wait_healthy()["status"] == "ok"  # from the test process, at the host's address
    # The settings file: root's, 0600, every secret intact (quoted for systemd), and the server runs as `ash`
    # (as root under gVisor: runsc needs real root, see systemd/ash-gvisor.conf).
    owner = host.sh(
        "stat -c %U /proc/$(systemctl show -p MainPID --value ash); stat -c '%U %a' /etc/ash/ash.env"
    ).stdout.split()
    assert owner == [server_user, "root", "600"], owner
    environment = host.sh("tr '\\0' '\\n' </proc/$(systemctl show -p MainPID --value ash)/environ").stdout
    assert f"ASH_CREDENTIAL_KEY={SECRETS['credential-key']}\n" in environment
    assert f"ASH_API_KEY={API_KEY}\n" in environment


# ---------------------------------------------------------------------------------------------------------- AWS


@pytest.fixture(scope="module")
def moto(network: Network) -> Iterator[S3Server]:
    server = S3Server(host=network.gateway).start()  # moto's one endpoint serves S3 and SSM alike
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aws_host(debian_image: str, network: Network, model: FakeAnthropic, moto: S3Server) -> Iterator[CloudHost]:
    aws_boot, _, _ = boot_modules()
    archive, key = release_archive()
    moto.bucket(BUCKET)
    moto.client().put_object(Bucket=BUCKET, Key=key, Body=archive)
    ssm = moto.client("ssm")
    for name, value in SECRETS.items():
        if name != MISSING:
            ssm.put_parameter(Name=f"/ash/{STACK}/{name}", Value=value, Type="SecureString")
    script = aws_boot.user_data(
        aws_boot.BootArgs(
            region=REGION,
            bucket=BUCKET,
            archive_key=key,
            parameter_prefix=f"/ash/{STACK}",
            secret_parameters=sorted(SECRETS),
            data_volume_id=None,
            log_group=f"/ash/{STACK}",
            metrics_namespace=f"Ash/{STACK}",
            settings={"ANTHROPIC_BASE_URL": model.url},
            endpoint_url=moto.endpoint,
            cloud_machine=False,
            runtime="gvisor",  # ash:runtime gvisor (the GCP host keeps bubblewrap, the default)
        )
    )
    work = Path(tempfile.mkdtemp(prefix="ash-boot-aws-"))
    host = Host.boot("ash-boot-aws", network, debian_image)
    try:
        # The instance role's stand-in: moto accepts any key.
        yield CloudHost(host, script, {**ACCESS}, work)
    finally:
        host.remove()
        shutil.rmtree(work, ignore_errors=True)


def test_aws_a_missing_parameter_fails_the_boot_with_its_name_and_no_env_file(
    aws_host: CloudHost, moto: S3Server
) -> None:
    boot = aws_host.run_boot(expect_failure=True)
    assert_failed_before_the_install(aws_host, boot, f"SSM parameter /ash/{STACK}/{MISSING}")
    assert "ParameterNotFound" in boot.log


def test_aws_user_data_installs_a_server_that_serves_a_turn(aws_host: CloudHost, moto: S3Server) -> None:
    moto.client("ssm").put_parameter(Name=f"/ash/{STACK}/{MISSING}", Value=SECRETS[MISSING], Type="SecureString")
    boot = aws_host.run_boot()
    assert_serves(aws_host, boot, server_user="root")  # runtime gvisor
    server = aws_host.server
    server.deploy_hello()
    session_id = server.new_session()
    reply = server.send(session_id, "hello from the aws boot")
    assert "hello from the aws boot" in reply, reply
    server.check_bridge_bytecode(session_id)  # infra/boot/install-ash.sh's install
    # runtime gvisor: install-ash.sh installed runsc and the unit's drop-in, and the session runs under gVisor.
    server.check_runs_under_gvisor(session_id)


# ---------------------------------------------------------------------------------------------------------- GCP


@pytest.fixture(scope="module")
def google(network: Network) -> Iterator[FakeGoogleCloud]:
    with FakeGoogleCloud(host=network.gateway, project="ash-boot-project") as fake:
        yield fake


@pytest.fixture(scope="module")
def gcp_host(debian_image: str, network: Network, model: FakeAnthropic, google: FakeGoogleCloud) -> Iterator[CloudHost]:
    _, gcp_boot, _ = boot_modules()
    archive, key = release_archive()
    google.objects[(BUCKET, key)] = archive
    google.secrets.update({f"{STACK}-{n}": v for n, v in SECRETS.items() if n != MISSING})
    script = gcp_boot.startup_script(
        gcp_boot.BootArgs(
            project="ash-boot-project",
            bucket=BUCKET,
            archive_key=key,
            secret_prefix=STACK,
            secret_names=sorted(SECRETS),
            settings={"ANTHROPIC_BASE_URL": model.url},
            metadata_url=google.metadata_url,
            storage_url=google.storage_url,
            secret_manager_url=google.secret_manager_url,
            cloud_machine=False,
        )
    )
    work = Path(tempfile.mkdtemp(prefix="ash-boot-gcp-"))
    host = Host.boot("ash-boot-gcp", network, debian_image)
    try:
        yield CloudHost(host, script, {}, work)
    finally:
        host.remove()
        shutil.rmtree(work, ignore_errors=True)


def test_gcp_a_missing_secret_fails_the_startup_script_with_its_name_and_no_env_file(gcp_host: CloudHost) -> None:
    boot = gcp_host.run_boot(expect_failure=True)
    where = f"Secret Manager secret projects/ash-boot-project/secrets/{STACK}-{MISSING}"
    assert_failed_before_the_install(gcp_host, boot, where)
    assert "not found or has no versions" in boot.log


def test_gcp_startup_script_installs_a_server_that_serves(gcp_host: CloudHost, google: FakeGoogleCloud) -> None:
    google.secrets[f"{STACK}-{MISSING}"] = SECRETS[MISSING]
    boot = gcp_host.run_boot()
    assert_serves(gcp_host, boot)
    # The archive and the secrets were fetched with the metadata server's token, which no command line carried.
    assert f"GET /v1/projects/ash-boot-project/secrets/{STACK}-{MISSING}/versions/latest:access" in google.requests
    assert google.token not in boot.log
    assert not podman("exec", gcp_host.host.name, "grep", "-r", google.token, "/var/log", check=False).stdout
