"""The Ash machines' cloud-init user data (the server's and the runners'), rendered by the shared `ash_infra.boot`:
install the packages, mount the data volume by its id (the server), then wait for what `pulumi up` copies over SSH
(delivery.py: the release archive, then the secrets file, atomically), write /etc/ash/ash.env with
infra/boot/write-env.py from that root-only file, and install Ash and start systemd/ash.service or
systemd/ash-runner.service with infra/boot/install-ash.sh. It names the secrets file and holds no secret: Hetzner
serves user data to every process on the machine (the metadata service) and shows it in the API."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ash_infra.boot import InstanceArgs, data_disk, render, runner_machine

from .hardening import hardening

METADATA_URL = "http://169.254.169.254/hetzner/v1/metadata"
SECRETS_FILE = "/etc/ash/secrets.json"
BOOT_COPY = "/opt/ash/boot.sh"  # where the script keeps itself, for delivery.py to run again
WAIT_S = 1800  # how long a first boot waits for `pulumi up` to deliver the release and the secrets


def volume_device(volume_id: str) -> str:
    """Where a Hetzner volume appears: its id is in the path, so the mount names exactly that volume."""
    return f"/dev/disk/by-id/scsi-0HC_Volume_{volume_id}"


HEADER = """
# Ash on Hetzner Cloud, first boot (infra/hetzner/ash_hetzner/boot.py). No secret is in this script: `pulumi up`
# copies them over SSH to a root-only file, which infra/boot/write-env.py reads. Log: /var/log/ash-boot.log and
# /var/log/cloud-init-output.log.
"""

BODY = r"""
release=@RELEASE@  # copied over SSH by `pulumi up` (delivery.py)
secrets=@SECRETS@  # written over SSH by `pulumi up`, last (delivery.py)

# Kept, so that `pulumi up` can run it again when the secrets change (delivery.py). It holds no secret.
[[ "$0" -ef @BOOT_COPY@ ]] || install -D -m 0755 "$0" @BOOT_COPY@

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends curl unzip python3
@HARDENING@
@MACHINE@
# The release and the secrets arrive over SSH once this machine answers; the secrets file comes last.
for _ in $(seq @WAIT_STEPS@); do [[ -s "$secrets" && -s "$release" ]] && break; sleep 2; done
[[ -s "$secrets" ]] || { echo "ash boot: no $secrets: pulumi up delivers it, then runs this again"; exit 1; }
rm -rf /opt/ash/src && mkdir -p /opt/ash/src
unzip -q "$release" -d /opt/ash/src

# Settings: the stack's, and the secrets from the root-only file. write-env.py reads them all before it writes
# anything: a missing one stops the boot here, named in the log, with no ash.env written.
@WRITE_ENV@
"""

# A runner: no volume (its sessions move between runners through the bucket); its id and the address the
# coordinator reaches it at come from the metadata service (the private network's address).
RUNNER_IDENTITY = r"""
# This runner's id and private address, from the metadata service.
metadata_url=@METADATA_URL@
instance_id=$(curl -fsS "$metadata_url/instance-id")
private_ip=
for _ in $(seq 30); do
  # Retried: the private interface can come up after cloud-init starts.
  private_ip=$(curl -fsS "$metadata_url/private-networks" | sed -n 's/^- ip: *//p' | head -n 1) || private_ip=
  [[ -n "$private_ip" ]] && break
  sleep 2
done
[[ -n "$private_ip" ]] || { echo "ash boot: no private network address"; exit 1; }
"""
RUNNER_MACHINE = runner_machine(RUNNER_IDENTITY)


@dataclass(kw_only=True)
class BootArgs(InstanceArgs):
    release_path: str  # /opt/ash-release-<digest>.zip: a new release is new user data, so a new machine
    secret_names: list[str]  # which of SECRET_VARIABLES this instance reads
    data_volume_id: str | None  # the server's; None on a runner
    s3_endpoint: str
    s3_region: str
    extras: str = "postgres,s3"
    metadata_url: str = METADATA_URL


def s3_settings(endpoint: str, region: str) -> dict[str, str]:
    """What the S3 snapshot store needs for Object Storage: its endpoint and region, and checksums only where the
    request needs them (newer botocore adds CRC checksums by default, which S3-compatible stores may refuse)."""
    return {
        "ASH_S3_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": region,
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


def user_data(args: BootArgs) -> str:
    runner = args.role == "runner"
    if not runner and args.cloud_machine and args.data_volume_id is None:
        raise ValueError("the server needs its data volume")
    device = volume_device(args.data_volume_id or "")
    values = {
        "@RELEASE@": shlex.quote(args.release_path),
        "@SECRETS@": SECRETS_FILE,
        "@BOOT_COPY@": BOOT_COPY,
        "@HARDENING@": hardening(),
        "@WAIT_STEPS@": str(WAIT_S // 2),
    }
    return render(
        args,
        header=HEADER,
        body=BODY,
        values=values,
        log_agent="",  # no log service on Hetzner: the boot log stays on the machine
        data_disk=data_disk(
            f"""
# The data volume (sessions, agents) outlives the server: format it once, mount it at the data dir by its id.
device={device}
""",
            wait_s=300,
            mount_source=device,
        ),
        runner_machine=RUNNER_MACHINE.replace("@METADATA_URL@", shlex.quote(args.metadata_url)),
        backend=["file", '--path "$secrets"'],
        runner_identity=("$instance_id", "$private_ip"),
        cloud=s3_settings(args.s3_endpoint, args.s3_region),
        secret_names=args.secret_names,
    )
