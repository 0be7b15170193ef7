"""The instances' startup script: mount the data disk (the server), install Ash from the release archive, write
/etc/ash/ash.env from Secret Manager, start systemd/ash.service (the server: standalone, or the coordinator when the
stack has runners) or systemd/ash-runner.service (a runner), send its journal to Cloud Logging (Ops Agent). It names
secrets and holds none. GCE runs it at every boot, so it is idempotent (a reboot also reinstalls the release)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from .network import API_PORT, RUNNER_PORT

SECRET_VARIABLES = {
    "api-key": "ASH_API_KEY",
    "anthropic-api-key": "ANTHROPIC_API_KEY",
    "credential-key": "ASH_CREDENTIAL_KEY",
    "database-url": "ASH_DATABASE_URL",
    "internal-secret": "ASH_INTERNAL_SECRET",
}

TEMPLATE = r"""#!/bin/bash
# Ash on Google Cloud, startup (infra/gcp/ash_gcp/boot.py). No secret is in this script: they are read from Secret
# Manager with the instance's service account. Log: /var/log/ash-boot.log and the serial console.
set -euo pipefail
exec > >(tee -a /var/log/ash-boot.log) 2>&1
echo "ash boot: $(date -Is)"

project=@PROJECT@
bucket=@BUCKET@
archive=@ARCHIVE@  # URL-encoded object name
secret_prefix=@SECRET_PREFIX@

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends curl unzip python3

token() {
  curl -fsS -H 'Metadata-Flavor: Google' \
    http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
@MACHINE@
# The release archive this stack uploaded.
rm -rf /opt/ash/src && mkdir -p /opt/ash/src
curl -fsS -H "Authorization: Bearer $(token)" -o /opt/ash/release.zip \
  "https://storage.googleapis.com/storage/v1/b/$bucket/o/$archive?alt=media"
unzip -q /opt/ash/release.zip -d /opt/ash/src

# Settings: secrets from Secret Manager, the rest from the stack.
secret() {
  curl -fsS -H "Authorization: Bearer $(token)" \
    "https://secretmanager.googleapis.com/v1/projects/$project/secrets/$secret_prefix-$1/versions/latest:access" |
    python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["payload"]["data"]).decode())'
}
umask 077
mkdir -p /etc/ash
{
@SETTINGS@
@SECRETS@
} >/etc/ash/ash.env
umask 022

bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src @EXTRAS@ @UNIT@

# Logs: the unit's journal to Cloud Logging through the Ops Agent.
if ! systemctl is-active --quiet google-cloud-ops-agent; then
  curl -fsSL -o /tmp/add-google-cloud-ops-agent-repo.sh https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh
  bash /tmp/add-google-cloud-ops-agent-repo.sh --also-install
fi
cat >/etc/google-cloud-ops-agent/config.yaml <<'CONF'
@AGENT_CONFIG@
CONF
systemctl restart google-cloud-ops-agent
echo "ash boot: done $(date -Is)"
"""

# The server's data disk.
DATA_DISK = r"""
# The data disk (sessions, agents) is kept by the managed instance group when the VM is recreated.
device=/dev/disk/by-id/google-ash-data
for _ in $(seq 60); do [[ -e "$device" ]] && break; sleep 2; done
blkid "$device" >/dev/null || mkfs.ext4 -q -L ash-data "$device"
mkdir -p /var/lib/ash
grep -q '^LABEL=ash-data ' /etc/fstab || echo 'LABEL=ash-data /var/lib/ash ext4 defaults,nofail 0 2' >>/etc/fstab
mountpoint -q /var/lib/ash || mount /var/lib/ash
chmod 0711 /var/lib/ash
"""

# A runner: no data disk (its sessions move between runners through the snapshot bucket); its id and the address the
# coordinator reaches it at come from the metadata server.
RUNNER_IDENTITY = r"""
# This runner's id and address, from the metadata server.
meta() {
  curl -fsS -H 'Metadata-Flavor: Google' "http://metadata.google.internal/computeMetadata/v1/instance/$1"
}
instance_name=$(meta name)
private_ip=$(meta network-interfaces/0/ip)
mkdir -p /var/lib/ash
chmod 0711 /var/lib/ash
"""

Role = Literal["server", "runner"]


@dataclass
class BootArgs:
    project: str
    bucket: str
    archive_key: str
    secret_prefix: str
    secret_names: list[str]  # which of SECRET_VARIABLES this instance reads
    snapshot_url: str | None = None
    extras: str = "postgres,gcs"
    settings: dict[str, str] = field(default_factory=dict)
    # "server": standalone, or ASH_MODE=coordinator when `coordinator` is set (the stack has runners).
    # "runner": ASH_MODE=runner, `ash runner` (systemd/ash-runner.service) registering with `server_url`.
    role: Role = "server"
    coordinator: bool = False
    server_url: str | None = None


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
    runner = args.role == "runner"
    if runner and not args.server_url:
        raise ValueError("a runner needs the coordinator's URL")
    settings = {
        **({"ASH_MODE": "runner"} if runner else {"ASH_MODE": "coordinator"} if args.coordinator else {}),
        # Behind the load balancer (the server: the firewall admits Google's ranges only) or the coordinator (a runner).
        "ASH_HOST": "0.0.0.0",  # noqa: S104
        **({"ASH_RUNNER_PORT": str(RUNNER_PORT)} if runner else {"ASH_PORT": str(API_PORT)}),
        "ASH_DATA_DIR": "/var/lib/ash",
        **({"ASH_SNAPSHOT_URL": args.snapshot_url} if args.snapshot_url else {}),
        **({"ASH_SERVER_URL": args.server_url} if runner and args.server_url else {}),
        **args.settings,
    }
    setting_lines = [f"  echo {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in settings.items()]
    if runner:  # known at boot only
        setting_lines += [
            '  echo "ASH_RUNNER_ID=\\"$instance_name\\""',
            '  echo "ASH_RUNNER_ADVERTISE_HOST=\\"$private_ip\\""',
        ]
    secret_lines = "\n".join(f'  echo "{SECRET_VARIABLES[name]}=\\"$(secret {name})\\""' for name in args.secret_names)
    replacements = {
        "@PROJECT@": shlex.quote(args.project),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(quote(args.archive_key, safe="")),
        "@SECRET_PREFIX@": shlex.quote(args.secret_prefix),
        "@MACHINE@": RUNNER_IDENTITY if runner else DATA_DISK,
        "@EXTRAS@": shlex.quote(args.extras),
        "@UNIT@": "ash-runner" if runner else "ash",
        "@SETTINGS@": "\n".join(setting_lines),
        "@SECRETS@": secret_lines,
        "@AGENT_CONFIG@": AGENT_CONFIG,
    }
    script = TEMPLATE
    for token, value in replacements.items():
        script = script.replace(token, value)
    return script
