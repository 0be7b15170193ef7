"""The instances' user data: mount the data volume (the server), install Ash from the release archive, write
/etc/ash/ash.env from SSM Parameter Store, start systemd/ash.service (the server: standalone, or the coordinator when
the stack has runners) or systemd/ash-runner.service (a runner), ship its log to CloudWatch. It names parameters and
holds no secret."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal

from .firewall import API_PORT, RUNNER_PORT

# Parameter (under the stack's prefix) -> the variable it becomes in /etc/ash/ash.env.
SECRET_VARIABLES = {
    "api-key": "ASH_API_KEY",
    "anthropic-api-key": "ANTHROPIC_API_KEY",
    "credential-key": "ASH_CREDENTIAL_KEY",
    "database-url": "ASH_DATABASE_URL",
    "internal-secret": "ASH_INTERNAL_SECRET",
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
arch=@ARCH@

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends awscli unzip rsyslog logrotate curl
@MACHINE@
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

bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src @EXTRAS@ @UNIT@

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

# The server's data volume.
DATA_VOLUME = r"""
# The data volume (sessions, agents) outlives the instance: format it once, mount it at the data dir.
volume=@VOLUME@
device=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volume/-/}
for _ in $(seq 150); do [[ -e "$device" ]] && break; sleep 2; done
blkid "$device" >/dev/null || mkfs.ext4 -q -L ash-data "$device"
mkdir -p /var/lib/ash
grep -q '^LABEL=ash-data ' /etc/fstab || echo 'LABEL=ash-data /var/lib/ash ext4 defaults,nofail 0 2' >>/etc/fstab
mount /var/lib/ash 2>/dev/null || mountpoint -q /var/lib/ash
chmod 0711 /var/lib/ash
"""

# A runner: no data volume (its sessions move between runners through the snapshot bucket); its id and the address
# the coordinator reaches it at come from the instance metadata (IMDSv2, the only version the instances allow).
RUNNER_IDENTITY = r"""
# This runner's id and address, from the instance metadata (IMDSv2).
imds_token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
imds() { curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" "http://169.254.169.254/latest/meta-data/$1"; }
instance_id=$(imds instance-id)
private_ip=$(imds local-ipv4)
mkdir -p /var/lib/ash
chmod 0711 /var/lib/ash
"""

Role = Literal["server", "runner"]


@dataclass
class BootArgs:
    region: str
    bucket: str
    archive_key: str
    parameter_prefix: str
    secret_parameters: list[str]  # which of SECRET_VARIABLES this instance reads
    data_volume_id: str | None  # the server's; None on a runner
    log_group: str
    metrics_namespace: str
    arch: str = "amd64"
    snapshot_url: str | None = None
    extras: str = "postgres,s3"
    settings: dict[str, str] = field(default_factory=dict)
    # "server": standalone, or ASH_MODE=coordinator when `coordinator` is set (the stack has runners).
    # "runner": ASH_MODE=runner, `ash runner` (systemd/ash-runner.service) registering with `server_url`.
    role: Role = "server"
    coordinator: bool = False
    server_url: str | None = None


def agent_config(log_group: str, namespace: str, role: Role = "server") -> str:
    disks = ["/", "/var/lib/ash"] if role == "server" else ["/"]  # a runner has no data volume
    files = [
        {
            "file_path": "/var/log/ash/server.log",
            "log_group_name": log_group,
            "log_stream_name": f"{{instance_id}}/{role}",
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
                "disk": {"measurement": ["used_percent"], "resources": disks},
            },
        },
    }
    return json.dumps(config, indent=2)


def user_data(args: BootArgs) -> str:
    runner = args.role == "runner"
    if runner and not args.server_url:
        raise ValueError("a runner needs the coordinator's URL")
    if not runner and args.data_volume_id is None:
        raise ValueError("the server needs its data volume")
    settings = {
        **({"ASH_MODE": "runner"} if runner else {"ASH_MODE": "coordinator"} if args.coordinator else {}),
        # Behind the load balancer (the server) or the coordinator (a runner): the security groups admit them only.
        "ASH_HOST": "0.0.0.0",  # noqa: S104
        **({"ASH_RUNNER_PORT": str(RUNNER_PORT)} if runner else {"ASH_PORT": str(API_PORT)}),
        "ASH_DATA_DIR": "/var/lib/ash",
        "AWS_REGION": args.region,
        **({"ASH_SNAPSHOT_URL": args.snapshot_url} if args.snapshot_url else {}),
        **({"ASH_SERVER_URL": args.server_url} if runner and args.server_url else {}),
        **args.settings,
    }
    setting_lines = [f"  echo {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in settings.items()]
    if runner:  # known at boot only
        setting_lines += [
            '  echo "ASH_RUNNER_ID=\\"$instance_id\\""',
            '  echo "ASH_RUNNER_ADVERTISE_HOST=\\"$private_ip\\""',
        ]
    secret_lines = "\n".join(
        f'  echo "{SECRET_VARIABLES[name]}=\\"$(param {name})\\""' for name in args.secret_parameters
    )
    machine = RUNNER_IDENTITY if runner else DATA_VOLUME.replace("@VOLUME@", shlex.quote(args.data_volume_id or ""))
    replacements = {
        "@REGION@": shlex.quote(args.region),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(args.archive_key),
        "@PARAMETERS@": shlex.quote(args.parameter_prefix),
        "@ARCH@": shlex.quote(args.arch),
        "@MACHINE@": machine,
        "@EXTRAS@": shlex.quote(args.extras),
        "@UNIT@": "ash-runner" if runner else "ash",
        "@SETTINGS@": "\n".join(setting_lines),
        "@SECRETS@": secret_lines,
        "@AGENT_CONFIG@": agent_config(args.log_group, args.metrics_namespace, args.role),
    }
    script = TEMPLATE
    for token, value in replacements.items():
        script = script.replace(token, value)
    return script
