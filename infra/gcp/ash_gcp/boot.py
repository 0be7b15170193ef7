"""The instances' startup script. In order: start the Ops Agent (so Cloud Logging shows any failure that follows),
install the packages, mount the data disk (the server), fetch the release archive, write /etc/ash/ash.env with
infra/boot/write-env.py (the stack's settings and the secrets from Secret Manager, every read checked), then install
Ash and start systemd/ash.service (the server: standalone, or the coordinator when the stack has runners) or
systemd/ash-runner.service (a runner) with infra/boot/install-ash.sh. It names secrets and holds none. GCE runs it at
every boot, so it is idempotent (a reboot also reinstalls the release)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import quote

from ash_infra.boot import InstanceArgs, data_disk, render, runner_machine

METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
SECRET_MANAGER_URL = "https://secretmanager.googleapis.com/v1"
STORAGE_URL = "https://storage.googleapis.com"

HEADER = """
# Ash on Google Cloud, startup (infra/gcp/ash_gcp/boot.py). No secret is in this script: infra/boot/write-env.py reads
# them from Secret Manager with the instance's service account, checks every read and prints no value. Log:
# /var/log/ash-boot.log and the serial console (and so the journal the Ops Agent, started first, ships).
"""

BODY = r"""
project=@PROJECT@
bucket=@BUCKET@
archive=@ARCHIVE@  # URL-encoded object name
secret_prefix=@SECRET_PREFIX@
metadata_url=@METADATA_URL@
storage_url=@STORAGE_URL@
secret_manager_url=@SECRET_MANAGER_URL@

export DEBIAN_FRONTEND=noninteractive
@LOG_AGENT@
apt-get update -q
apt-get install -y -q --no-install-recommends curl unzip python3

# The service account's token as a request header on curl's stdin (`-H @-`): never on a command line, where any local
# user's `ps` would show it.
auth_header() {
  curl -fsS -H 'Metadata-Flavor: Google' "$metadata_url/instance/service-accounts/default/token" |
    python3 -c 'import json, sys; print("Authorization: Bearer " + json.load(sys.stdin)["access_token"])'
}
@MACHINE@
# The release archive this stack uploaded.
rm -rf /opt/ash/src && mkdir -p /opt/ash/src
auth_header | curl -fsS -H @- -o /opt/ash/release.zip "$storage_url/storage/v1/b/$bucket/o/$archive?alt=media"
unzip -q /opt/ash/release.zip -d /opt/ash/src

# Settings: the stack's, and the secrets from Secret Manager. write-env.py reads them all before it writes anything: a
# secret it cannot read stops the boot here, named in the log, with no ash.env written (a reboot keeps the last one).
@WRITE_ENV@
"""

# First, before anything that can fail: the Ops Agent. The startup script's output reaches the journal through the
# guest agent's script runner, and the journal reaches Cloud Logging through the Ops Agent.
LOG_AGENT = r"""
# The Ops Agent first, so Cloud Logging shows why a boot failed.
if ! systemctl is-active --quiet google-cloud-ops-agent; then
  command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends curl; }
  curl -fsSL --retry 5 -o /tmp/add-google-cloud-ops-agent-repo.sh \
    https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh
  bash /tmp/add-google-cloud-ops-agent-repo.sh --also-install
fi
cat >/etc/google-cloud-ops-agent/config.yaml <<'CONF'
@AGENT_CONFIG@
CONF
systemctl restart google-cloud-ops-agent
"""

# The server's data disk.
DATA_DISK = data_disk(
    """
# The data disk (sessions, agents) is kept by the managed instance group when the VM is recreated.
device=/dev/disk/by-id/google-ash-data
""",
    wait_s=120,
)

# A runner: no data disk (its sessions move between runners through the snapshot bucket); its id and the address the
# coordinator reaches it at come from the metadata server.
RUNNER_MACHINE = runner_machine(
    r"""
# This runner's id and address, from the metadata server.
meta() {
  curl -fsS -H 'Metadata-Flavor: Google' "$metadata_url/instance/$1"
}
instance_name=$(meta name)
private_ip=$(meta network-interfaces/0/ip)
"""
)


@dataclass(kw_only=True)
class BootArgs(InstanceArgs):
    project: str
    bucket: str
    archive_key: str
    secret_prefix: str
    secret_names: list[str]  # which of SECRET_VARIABLES this instance reads
    extras: str = "postgres,gcs"
    # Only tests/distribution/test_cloud_boot.py changes these, to boot the script in a container against a fake: the
    # base URLs of the metadata server, Cloud Storage and Secret Manager, and `cloud_machine=False`, which leaves out
    # what only a GCE instance has (the data disk; the Ops Agent, which is downloaded from Google's repository).
    metadata_url: str = METADATA_URL
    storage_url: str = STORAGE_URL
    secret_manager_url: str = SECRET_MANAGER_URL


AGENT_CONFIG = """logging:
  receivers:
    ash_journal:
      type: systemd_journald
  service:
    pipelines:
      ash:
        receivers: [ash_journal]
metrics:
  receivers:
    hostmetrics:
      type: hostmetrics
  service:
    pipelines:
      default_pipeline:
        receivers: [hostmetrics]"""


def startup_script(args: BootArgs) -> str:
    values = {
        "@PROJECT@": shlex.quote(args.project),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(quote(args.archive_key, safe="")),
        "@SECRET_PREFIX@": shlex.quote(args.secret_prefix),
        "@METADATA_URL@": shlex.quote(args.metadata_url),
        "@STORAGE_URL@": shlex.quote(args.storage_url),
        "@SECRET_MANAGER_URL@": shlex.quote(args.secret_manager_url),
    }
    return render(
        args,
        header=HEADER,
        body=BODY,
        values=values,
        log_agent=LOG_AGENT.replace("@AGENT_CONFIG@", AGENT_CONFIG),
        data_disk=DATA_DISK,
        runner_machine=RUNNER_MACHINE,
        backend=[
            "gcp",
            '--project "$project" --prefix "$secret_prefix"',
            '--metadata-url "$metadata_url" --secret-manager-url "$secret_manager_url"',
        ],
        runner_identity=("$instance_name", "$private_ip"),
        cloud={},
        secret_names=args.secret_names,
    )
