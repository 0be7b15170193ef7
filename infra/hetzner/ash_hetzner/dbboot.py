"""The database server's cloud-init user data: Debian's PostgreSQL with its data on a volume mounted by id, listening
for the private network only (pg_hba: the subnet, scram-sha-256, TLS), the `ash` role and database, and a nightly
pg_dump to the Object Storage bucket. Hetzner has no managed PostgreSQL; this is the bare-metal path's database
(ansible/roles/ash_postgresql installs the same package and objects) set up by cloud-init, because Ansible does not
run on a machine at first boot. The role's password and the bucket's keys arrive over SSH (delivery.py)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ash_infra.boot import PREAMBLE

from .boot import volume_device
from .hardening import hardening

BACKUP_ENV = "/etc/ash/backup.env"  # the bucket's keys, root-only, written over SSH

SCRIPT = r"""#!/bin/bash
# Ash on Hetzner Cloud, the database server's first boot (infra/hetzner/ash_hetzner/dbboot.py). No secret here: the
# role's password and the bucket's keys arrive over SSH from `pulumi up`. Log: /var/log/ash-boot.log.
@PREAMBLE@
device=@DEVICE@
subnet=@SUBNET@
export DEBIAN_FRONTEND=noninteractive

# The volume first, at PostgreSQL's home, so the cluster is made on it (or, on a new server, an existing one is
# adopted: pg_createcluster keeps a data directory that holds a cluster).
for _ in $(seq 150); do [[ -e "$device" ]] && break; sleep 2; done
blkid "$device" >/dev/null || mkfs.ext4 -q -L ash-db "$device"
mkdir -p /var/lib/postgresql
grep -q "^$device " /etc/fstab || echo "$device /var/lib/postgresql ext4 defaults,nofail 0 2" >>/etc/fstab
mountpoint -q /var/lib/postgresql || mount /var/lib/postgresql

apt-get update -q
apt-get install -y -q --no-install-recommends postgresql awscli ca-certificates
@HARDENING@
version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1)
conf=/etc/postgresql/$version/main
# Every address: the private one may come up after PostgreSQL. The cloud firewall admits nothing on the public
# interface, and pg_hba admits the private subnet only, with TLS (Debian's certificate) and a password.
cat >"$conf/conf.d/ash.conf" <<'CONF'
listen_addresses = '*'
ssl = on
password_encryption = scram-sha-256
CONF
grep -q '^hostssl ash ash ' "$conf/pg_hba.conf" ||
  echo "hostssl ash ash $subnet scram-sha-256" >>"$conf/pg_hba.conf"
systemctl restart "postgresql@$version-main"
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'CREATE ROLE ash LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ash') \gexec
SELECT 'CREATE DATABASE ash OWNER ash' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ash') \gexec
SQL

# Nightly pg_dump to the bucket (backups/), older dumps deleted after the retention.
install -d -m 0700 /etc/ash
cat >/usr/local/sbin/ash-pg-dump <<'DUMP'
#!/bin/bash
set -euo pipefail
# shellcheck source=/dev/null
source @BACKUP_ENV@
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
s3=(aws --endpoint-url @ENDPOINT@ --region @REGION@ s3)
runuser -u postgres -- pg_dump -Fc ash |
  "${s3[@]}" cp --only-show-errors - "s3://@BUCKET@/backups/ash-$(date -u +%F).dump"
cutoff=$(date -u -d "-@RETENTION@ days" +%F)
"${s3[@]}" ls "s3://@BUCKET@/backups/" | awk '{print $4}' | while read -r key; do
  day=${key#ash-}
  day=${day%.dump}
  if [[ "$day" < "$cutoff" ]]; then "${s3[@]}" rm --only-show-errors "s3://@BUCKET@/backups/$key"; fi
done
DUMP
chmod 0700 /usr/local/sbin/ash-pg-dump
cat >/etc/systemd/system/ash-pg-dump.service <<'UNIT'
[Unit]
Description=Ash: dump the database to Object Storage
After=postgresql.service
ConditionPathExists=@BACKUP_ENV@

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ash-pg-dump
UNIT
cat >/etc/systemd/system/ash-pg-dump.timer <<'UNIT'
[Unit]
Description=Ash: nightly database dump

[Timer]
OnCalendar=*-*-* 02:30:00 UTC
Persistent=true
RandomizedDelaySec=10min

[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now ash-pg-dump.timer
echo "ash boot: done $(date -Is)"
"""


@dataclass(kw_only=True)
class DatabaseBootArgs:
    volume_id: str
    subnet: str
    bucket: str
    endpoint: str
    region: str
    retention_days: int = 7


def database_user_data(args: DatabaseBootArgs) -> str:
    values = {
        "@PREAMBLE@": PREAMBLE.strip(),
        "@HARDENING@": hardening(),
        "@DEVICE@": shlex.quote(volume_device(args.volume_id)),
        "@SUBNET@": shlex.quote(args.subnet),
        "@BACKUP_ENV@": BACKUP_ENV,
        "@ENDPOINT@": shlex.quote(args.endpoint),
        "@REGION@": shlex.quote(args.region),
        "@BUCKET@": args.bucket,
        "@RETENTION@": str(args.retention_days),
    }
    script = SCRIPT
    for token, value in values.items():
        script = script.replace(token, value)
    return script
