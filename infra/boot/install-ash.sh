#!/bin/bash
# Install Ash from an unpacked source archive and start systemd/ash.service. The boot scripts of infra/aws and
# infra/gcp run it as root after they have written /etc/ash/ash.env from the cloud's secret store; it is the cloud
# counterpart of the Ansible roles (same packages, virtualenv, server and sandbox users and unit).
#   install-ash.sh SOURCE_DIR EXTRAS [UNIT [RUNTIME]]   e.g. install-ash.sh /opt/ash/src postgres,s3 ash gvisor
# UNIT is ash (the default: a standalone server or a coordinator) or ash-runner (a runner, `ash runner`). RUNTIME is
# the sandboxes' (ASH_SANDBOX_RUNTIME, which the boot script writes to ash.env): bwrap (the default) or gvisor, which
# also installs runsc, busybox and tini and the unit's drop-in systemd/ash-gvisor.conf.
set -euo pipefail

src="$1"
extras="$2"
unit="${3:-ash}"
runtime="${4:-bwrap}"
case "$unit" in
  ash | ash-runner) ;;
  *)
    echo "install-ash.sh: UNIT must be ash or ash-runner, not $unit" >&2
    exit 2
    ;;
esac
case "$runtime" in
  bwrap) runtime_packages=() ;;
  gvisor) runtime_packages=(runsc busybox tini) ;;
  *)
    echo "install-ash.sh: RUNTIME must be bwrap or gvisor, not $runtime" >&2
    exit 2
    ;;
esac
venv=/opt/ash/venv
uv_version=0.13.9

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv bubblewrap util-linux ca-certificates nftables \
  "${runtime_packages[@]}"

# The virtualenv is built on the system interpreter: sandboxes run it as the sandbox user.
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "uv==$uv_version"
# --compile-bytecode: the sandbox user cannot write a bytecode cache; without it every bridge start recompiles.
VIRTUAL_ENV="$venv" "$venv/bin/uv" pip install -q --compile-bytecode --reinstall-package ash \
  --constraint "$src/requirements.lock" "${src}[$extras]"
chmod -R a+rX /opt/ash

# The server's user (systemd/ash.service: User=ash, six ambient capabilities) and the unprivileged user every
# sandbox runs as.
id ash >/dev/null 2>&1 ||
  useradd --system --user-group --no-create-home --home-dir /var/lib/ash --shell /usr/sbin/nologin \
    --comment "Ash server" ash
id ash-sandbox >/dev/null 2>&1 ||
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --comment "Ash sandboxes" ash-sandbox
# The data dir is the server user's before the unit first starts: StateDirectory= would chown one owned by anyone
# else recursively, session folders (the sandbox user's) included.
install -d -m 0711 -o ash -g ash /var/lib/ash
{
  echo "ASH_SANDBOX_UID=$(id -u ash-sandbox)"
  echo "ASH_SANDBOX_GID=$(id -g ash-sandbox)"
} >>/etc/ash/ash.env
chmod 0600 /etc/ash/ash.env

# Sandboxes of agents with network "full" share the host's network: keep them off the metadata server and its
# instance credentials. The owner match sees the sandbox uid even inside bubblewrap's user namespace.
mkdir -p /etc/nftables.d
cat >/etc/nftables.d/ash-metadata.nft <<'NFT'
table inet ash_metadata
delete table inet ash_metadata
table inet ash_metadata {
  chain output {
    type filter hook output priority filter; policy accept;
    meta skuid "ash-sandbox" ip daddr 169.254.169.254 reject
    meta skuid "ash-sandbox" ip6 daddr fd00:ec2::254 reject
  }
}
NFT
grep -q '^include "/etc/nftables.d/\*.nft"' /etc/nftables.conf ||
  echo 'include "/etc/nftables.d/*.nft"' >>/etc/nftables.conf
nft -f /etc/nftables.d/ash-metadata.nft
systemctl enable nftables

# The unit, unchanged (systemd/ash.service, or systemd/ash-runner.service on a runner), and under gVisor its drop-in
# (systemd/ash-gvisor.conf: the server as root, which runsc needs).
if [[ "$unit" == ash-runner ]]; then
  install -m 0644 "$src/systemd/ash-runner.service" /etc/systemd/system/ash-runner.service
else
  install -m 0644 "$src/systemd/ash.service" /etc/systemd/system/ash.service
fi
if [[ "$runtime" == gvisor ]]; then
  install -D -m 0644 "$src/systemd/ash-gvisor.conf" "/etc/systemd/system/$unit.service.d/gvisor.conf"
else
  rm -f "/etc/systemd/system/$unit.service.d/gvisor.conf"
fi
systemctl daemon-reload
systemctl enable "$unit"
systemctl restart "$unit"
