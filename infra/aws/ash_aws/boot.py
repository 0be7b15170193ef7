"""The instances' user data. In order: start the CloudWatch agent (so the log group shows any failure that follows),
install the packages and the server's log forwarding, mount the data volume (the server), fetch the release archive,
write /etc/ash/ash.env with infra/boot/write-env.py (the stack's settings and the secrets from SSM Parameter Store,
every read checked), then install Ash and start systemd/ash.service (the server: standalone, or the coordinator when
the stack has runners) or systemd/ash-runner.service (a runner) with infra/boot/install-ash.sh. It names parameters
and holds no secret."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from ash_infra.boot import InstanceArgs, Role, data_disk, render, runner_machine

HEADER = """
# Ash on AWS, first boot (infra/aws/ash_aws/boot.py). No secret is in this script: infra/boot/write-env.py reads them
# from SSM Parameter Store with the instance role, checks every read and prints no value. Log: /var/log/ash-boot.log
# and the console (`aws ec2 get-console-output`), shipped to CloudWatch by the agent this script starts first.
"""

BODY = r"""
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
DATA_VOLUME = data_disk(
    """
# The data volume (sessions, agents) outlives the instance: format it once, mount it at the data dir.
volume=@VOLUME@
device=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volume/-/}
""",
    wait_s=300,
)

# A runner: no data volume (its sessions move between runners through the snapshot bucket); its id and the address
# the coordinator reaches it at come from the instance metadata (IMDSv2, the only version the instances allow).
RUNNER_MACHINE = runner_machine(
    r"""
# This runner's id and address, from the instance metadata (IMDSv2).
imds_token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
imds() { curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" "http://169.254.169.254/latest/meta-data/$1"; }
instance_id=$(imds instance-id)
private_ip=$(imds local-ipv4)
"""
)


@dataclass(kw_only=True)
class BootArgs(InstanceArgs):
    region: str
    bucket: str
    archive_key: str
    parameter_prefix: str
    secret_parameters: list[str]  # which of SECRET_VARIABLES this instance reads
    data_volume_id: str | None  # the server's; None on a runner
    log_group: str
    metrics_namespace: str
    arch: str = "amd64"
    extras: str = "postgres,s3"
    # Only tests/distribution/test_cloud_boot.py changes these, to boot the script in a container against moto:
    # `endpoint_url` is passed to every S3 and SSM call (Debian's AWS CLI ignores AWS_ENDPOINT_URL), and
    # `cloud_machine=False` leaves out what only an EC2 instance has (the EBS data volume; the CloudWatch agent, which
    # is downloaded from amazonaws.com and configured from the instance metadata).
    endpoint_url: str | None = None


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
    if not runner and args.cloud_machine and args.data_volume_id is None:
        raise ValueError("the server needs its data volume")
    if runner and not args.cloud_machine:
        raise ValueError("a runner's id and address come from the instance metadata: it needs an EC2 instance")
    log_agent = LOG_AGENT.replace("@ARCH@", shlex.quote(args.arch)).replace(
        "@AGENT_CONFIG@", agent_config(args.log_group, args.metrics_namespace, args.role)
    )
    values = {
        "@REGION@": shlex.quote(args.region),
        "@BUCKET@": shlex.quote(args.bucket),
        "@ARCHIVE@": shlex.quote(args.archive_key),
        "@PARAMETERS@": shlex.quote(args.parameter_prefix),
        "@ENDPOINT@": shlex.quote(args.endpoint_url or ""),
    }
    return render(
        args,
        header=HEADER,
        body=BODY,
        values=values,
        log_agent=log_agent,
        data_disk=DATA_VOLUME.replace("@VOLUME@", shlex.quote(args.data_volume_id or "")),
        runner_machine=RUNNER_MACHINE,
        backend=["ssm", '--region "$region" --prefix "$parameters" "${aws_endpoint[@]}"'],
        runner_identity=("$instance_id", "$private_ip"),
        cloud={"AWS_REGION": args.region},
        secret_names=args.secret_parameters,
    )
