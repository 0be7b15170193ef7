"""The server's user data: mount the data volume, install Ash from the release archive, write /etc/ash/ash.env from
SSM Parameter Store, start systemd/ash.service, ship its log to CloudWatch. It names parameters and holds no secret."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

# Parameter (under the stack's prefix) -> the variable it becomes in /etc/ash/ash.env.
SECRET_VARIABLES = {
    "api-key": "ASH_API_KEY",
    "anthropic-api-key": "ANTHROPIC_API_KEY",
    "credential-key": "ASH_CREDENTIAL_KEY",
    "database-url": "ASH_DATABASE_URL",
}

TEMPLATE = r"""#!/bin/bash
# Ash on AWS, first boot (infra/aws/ash_aws/boot.py). No secret is in this script: they are read from SSM Parameter
# Store with the instance role. Log: /var/log/ash-boot.log.
set -euo pipefail
exec >>/var/log/ash-boot.log 2>&1
echo "ash boot: $(date -Is)"

region=@REGION@
bucket=@BUCKET@
archive=@ARCHIVE@
parameters=@PARAMETERS@
volume=@VOLUME@
arch=@ARCH@

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends awscli unzip rsyslog logrotate curl

# The data volume (sessions, agents) outlives the instance: format it once, mount it at the data dir.
device=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volume/-/}
for _ in $(seq 150); do [[ -e "$device" ]] && break; sleep 2; done
blkid "$device" >/dev/null || mkfs.ext4 -q -L ash-data "$device"
mkdir -p /var/lib/ash
grep -q '^LABEL=ash-data ' /etc/fstab || echo 'LABEL=ash-data /var/lib/ash ext4 defaults,nofail 0 2' >>/etc/fstab
mount /var/lib/ash 2>/dev/null || mountpoint -q /var/lib/ash
chmod 0711 /var/lib/ash

# The release archive this stack uploaded.
rm -rf /opt/ash/src && mkdir -p /opt/ash/src
aws s3 cp --only-show-errors --region "$region" "s3://$bucket/$archive" /opt/ash/release.zip
unzip -q /opt/ash/release.zip -d /opt/ash/src

# Settings: secrets from SSM Parameter Store (SecureString), the rest from the stack.
param() {
  aws ssm get-parameter --region "$region" --with-decryption --name "$parameters/$1" \
    --query Parameter.Value --output text
}
umask 077
mkdir -p /etc/ash
{
@SETTINGS@
@SECRETS@
} >/etc/ash/ash.env
umask 022

bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src @EXTRAS@

# Logs: journald -> rsyslog -> /var/log/ash/server.log -> the CloudWatch agent.
mkdir -p /var/log/ash
cat >/etc/rsyslog.d/30-ash.conf <<'CONF'
if $programname == 'ash' then /var/log/ash/server.log
& stop
CONF
cat >/etc/logrotate.d/ash <<'CONF'
/var/log/ash/*.log {
  daily
  rotate 7
  compress
  missingok
  copytruncate
}
CONF
systemctl restart rsyslog
curl -fsSL -o /tmp/amazon-cloudwatch-agent.deb \
  "https://amazoncloudwatch-agent.s3.amazonaws.com/debian/$arch/latest/amazon-cloudwatch-agent.deb"
dpkg -i -E /tmp/amazon-cloudwatch-agent.deb
cat >/opt/aws/amazon-cloudwatch-agent/etc/ash.json <<'CONF'
@AGENT_CONFIG@
CONF
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
  -c file:/opt/aws/amazon-cloudwatch-agent/etc/ash.json
echo "ash boot: done $(date -Is)"
"""


@dataclass
class BootArgs:
    region: str
    bucket: str
    archive_key: str
    parameter_prefix: str
    secret_parameters: list[str]  # which of SECRET_VARIABLES exist for this stack
    data_volume_id: str
    log_group: str
    metrics_namespace: str
    arch: str = "amd64"
    snapshot_url: str | None = None
    extras: str = "postgres,s3"
    settings: dict[str, str] = field(default_factory=dict)


def agent_config(log_group: str, namespace: str) -> str:
    files = [
        {
            "file_path": "/var/log/ash/server.log",
            "log_group_name": log_group,
            "log_stream_name": "{instance_id}/server",
        },
        {"file_path": "/var/log/ash-boot.log", "log_group_name": log_group, "log_stream_name": "{instance_id}/boot"},
    ]
    config = {
        "agent": {"run_as_user": "root"},
        "logs": {"logs_collected": {"files": {"collect_list": files}}},
        "metrics": {
            "namespace": namespace,
            "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
            "metrics_collected": {
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/", "/var/lib/ash"]},
            },
        },
    }
    return json.dumps(config, indent=2)


def user_data(args: BootArgs) -> str:
    settings = {
        "ASH_HOST": "0.0.0.0",  # noqa: S104 - behind the load balancer; the security group admits it only
        "ASH_PORT": "4100",
        "ASH_DATA_DIR": "/var/lib/ash",
        "AWS_REGION": args.region,
        **({"ASH_SNAPSHOT_URL": args.snapshot_url} if args.snapshot_url else {}),
        **args.settings,
    }
    setting_lines = "\n".join(f"  echo {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in settings.items())
    secret_lines = "\n".join(
        f'  echo "{SECRET_VARIABLES[name]}=\\"$(param {name})\\""' for name in args.secret_parameters
    )
    replacements = {
        "@REGION@": shlex.quote(args.region),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(args.archive_key),
        "@PARAMETERS@": shlex.quote(args.parameter_prefix),
        "@VOLUME@": shlex.quote(args.data_volume_id),
        "@ARCH@": shlex.quote(args.arch),
        "@EXTRAS@": shlex.quote(args.extras),
        "@SETTINGS@": setting_lines,
        "@SECRETS@": secret_lines,
        "@AGENT_CONFIG@": agent_config(args.log_group, args.metrics_namespace),
    }
    script = TEMPLATE
    for token, value in replacements.items():
        script = script.replace(token, value)
    return script
