"""The instances' user data. In order: start the CloudWatch agent (so the log group shows any failure that follows),
install the packages and the server's log forwarding, mount the data volume (the server), fetch the release archive,
write /etc/ash/ash.env with infra/boot/write-env.py (the stack's settings and the secrets from SSM Parameter Store,
every read checked), then install Ash and start systemd/ash.service (the server: standalone, or the coordinator when
the stack has runners) or systemd/ash-runner.service (a runner) with infra/boot/install-ash.sh. It names parameters
and holds no secret."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Literal

from ash_infra.secrets import SECRET_VARIABLES

from .firewall import API_PORT, RUNNER_PORT

TEMPLATE = r"""#!/bin/bash
# Ash on AWS, first boot (infra/aws/ash_aws/boot.py). No secret is in this script: infra/boot/write-env.py reads them
# from SSM Parameter Store with the instance role, checks every read and prints no value. Log: /var/log/ash-boot.log
# and the console (`aws ec2 get-console-output`), shipped to CloudWatch by the agent this script starts first.
set -Eeuo pipefail
exec > >(tee -a /var/log/ash-boot.log) 2>&1
trap 'echo "ash boot: FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
echo "ash boot: $(date -Is)"

region=@REGION@
bucket=@BUCKET@
archive=@ARCHIVE@
parameters=@PARAMETERS@
endpoint=@ENDPOINT@  # empty: the region's own S3 and SSM endpoints
aws_endpoint=()
[[ -z "$endpoint" ]] || aws_endpoint=(--endpoint-url "$endpoint")

export DEBIAN_FRONTEND=noninteractive
@LOG_AGENT@
apt-get update -q
apt-get install -y -q --no-install-recommends awscli unzip rsyslog logrotate curl python3

# The server's log: journald -> rsyslog -> /var/log/ash/server.log (-> the CloudWatch agent), set up before the
# server first starts so its first lines are kept too.
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
@MACHINE@
# The release archive this stack uploaded.
rm -rf /opt/ash/src && mkdir -p /opt/ash/src
aws "${aws_endpoint[@]}" s3 cp --only-show-errors --region "$region" "s3://$bucket/$archive" /opt/ash/release.zip
unzip -q /opt/ash/release.zip -d /opt/ash/src

# Settings: the stack's, and the secrets from SSM Parameter Store (SecureString). write-env.py reads them all before
# it writes anything: a parameter it cannot read stops the boot here, named in the log, with no ash.env written.
@WRITE_ENV@

bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src @EXTRAS@ @UNIT@
echo "ash boot: done $(date -Is)"
"""

# First, before anything that can fail: the CloudWatch agent, shipping this boot's log (and then the server's).
LOG_AGENT = r"""
# The CloudWatch agent first, so the log group shows why a boot failed. A static package: curl and dpkg suffice.
arch=@ARCH@
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends curl; }
curl -fsSL --retry 5 -o /tmp/amazon-cloudwatch-agent.deb \
  "https://amazoncloudwatch-agent.s3.amazonaws.com/debian/$arch/latest/amazon-cloudwatch-agent.deb"
dpkg -i -E /tmp/amazon-cloudwatch-agent.deb
cat >/opt/aws/amazon-cloudwatch-agent/etc/ash.json <<'CONF'
@AGENT_CONFIG@
CONF
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
  -c file:/opt/aws/amazon-cloudwatch-agent/etc/ash.json
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
    # Only tests/distribution/test_cloud_boot.py changes these, to boot the script in a container against moto:
    # `endpoint_url` is passed to every S3 and SSM call (Debian's AWS CLI ignores AWS_ENDPOINT_URL), and
    # `cloud_machine=False` leaves out what only an EC2 instance has (the EBS data volume; the CloudWatch agent, which
    # is downloaded from amazonaws.com and configured from the instance metadata).
    endpoint_url: str | None = None
    cloud_machine: bool = True


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
    if not runner and args.cloud_machine and args.data_volume_id is None:
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
    if runner and not args.cloud_machine:
        raise ValueError("a runner's id and address come from the instance metadata: it needs an EC2 instance")
    write_env = [
        "python3 /opt/ash/src/infra/boot/write-env.py /etc/ash/ash.env ssm",
        '  --region "$region" --prefix "$parameters" "${aws_endpoint[@]}"',
        *(f"  --setting {shlex.quote(f'{k}={v}')}" for k, v in settings.items()),
    ]
    if runner:  # known at boot only
        write_env += ['  --setting "ASH_RUNNER_ID=$instance_id"', '  --setting "ASH_RUNNER_ADVERTISE_HOST=$private_ip"']
    write_env += [f"  --secret {SECRET_VARIABLES[name]}={name}" for name in args.secret_parameters]
    if runner:
        machine = RUNNER_IDENTITY
    elif args.cloud_machine:
        machine = DATA_VOLUME.replace("@VOLUME@", shlex.quote(args.data_volume_id or ""))
    else:
        machine = "\nmkdir -p /var/lib/ash\n"  # no data volume: the data stays on the root disk
    log_agent = LOG_AGENT.replace("@ARCH@", shlex.quote(args.arch)).replace(
        "@AGENT_CONFIG@", agent_config(args.log_group, args.metrics_namespace, args.role)
    )
    replacements = {
        "@REGION@": shlex.quote(args.region),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(args.archive_key),
        "@PARAMETERS@": shlex.quote(args.parameter_prefix),
        "@ENDPOINT@": shlex.quote(args.endpoint_url or ""),
        "@LOG_AGENT@": log_agent if args.cloud_machine else "",
        "@MACHINE@": machine,
        "@EXTRAS@": shlex.quote(args.extras),
        "@UNIT@": "ash-runner" if runner else "ash",
        "@WRITE_ENV@": " \\\n".join(write_env),
    }
    script = TEMPLATE
    for token, value in replacements.items():
        script = script.replace(token, value)
    return script
