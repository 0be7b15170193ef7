"""The server's startup script: mount the data disk, install Ash from the release archive, write /etc/ash/ash.env from
Secret Manager, start systemd/ash.service, send its journal to Cloud Logging (Ops Agent). It names secrets and holds
none. GCE runs it at every boot, so it is idempotent (a reboot also reinstalls the release)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from urllib.parse import quote

SECRET_VARIABLES = {
    "api-key": "ASH_API_KEY",
    "anthropic-api-key": "ANTHROPIC_API_KEY",
    "credential-key": "ASH_CREDENTIAL_KEY",
    "database-url": "ASH_DATABASE_URL",
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

# The data disk (sessions, agents) is kept by the managed instance group when the VM is recreated.
device=/dev/disk/by-id/google-ash-data
for _ in $(seq 60); do [[ -e "$device" ]] && break; sleep 2; done
blkid "$device" >/dev/null || mkfs.ext4 -q -L ash-data "$device"
mkdir -p /var/lib/ash
grep -q '^LABEL=ash-data ' /etc/fstab || echo 'LABEL=ash-data /var/lib/ash ext4 defaults,nofail 0 2' >>/etc/fstab
mountpoint -q /var/lib/ash || mount /var/lib/ash
chmod 0711 /var/lib/ash

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

bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src @EXTRAS@

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


@dataclass
class BootArgs:
    project: str
    bucket: str
    archive_key: str
    secret_prefix: str
    secret_names: list[str]
    snapshot_url: str | None = None
    extras: str = "postgres,gcs"
    settings: dict[str, str] = field(default_factory=dict)


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
    settings = {
        "ASH_HOST": "0.0.0.0",  # noqa: S104 - behind the load balancer; the firewall admits Google's ranges only
        "ASH_PORT": "4100",
        "ASH_DATA_DIR": "/var/lib/ash",
        **({"ASH_SNAPSHOT_URL": args.snapshot_url} if args.snapshot_url else {}),
        **args.settings,
    }
    setting_lines = "\n".join(f"  echo {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in settings.items())
    secret_lines = "\n".join(f'  echo "{SECRET_VARIABLES[name]}=\\"$(secret {name})\\""' for name in args.secret_names)
    replacements = {
        "@PROJECT@": shlex.quote(args.project),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(quote(args.archive_key, safe="")),
        "@SECRET_PREFIX@": shlex.quote(args.secret_prefix),
        "@EXTRAS@": shlex.quote(args.extras),
        "@SETTINGS@": setting_lines,
        "@SECRETS@": secret_lines,
        "@AGENT_CONFIG@": AGENT_CONFIG,
    }
    script = TEMPLATE
    for token, value in replacements.items():
        script = script.replace(token, value)
    return script
