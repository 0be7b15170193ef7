#!/usr/bin/env bash
# Install Ash from this checkout on Debian/Ubuntu: system packages, then a virtualenv with pinned dependencies.
#   scripts/install.sh          the server and CLI
#   scripts/install.sh --dev    plus the test and lint tools (and every sandbox runtime: the tests run both)
#   scripts/install.sh --runtime gvisor   plus gVisor's runsc, for ASH_SANDBOX_RUNTIME=gvisor (docs/security.md)
# The virtualenv is built on the system Python (/usr/bin/python3) on purpose: sandboxes run as an unprivileged
# user that must be able to execute the interpreter, and a Python under /root (pyenv, say) is out of its reach.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dev=0
runtime=bwrap
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dev) dev=1 ;;
    --runtime)
      runtime="${2:-}"
      shift
      ;;
    --runtime=*) runtime="${1#--runtime=}" ;;
    *)
      echo "usage: scripts/install.sh [--dev] [--runtime bwrap|gvisor]" >&2
      exit 2
      ;;
  esac
  shift
done
if [[ "$runtime" != bwrap && "$runtime" != gvisor ]]; then
  echo "scripts/install.sh: --runtime is bwrap or gvisor, not '$runtime'" >&2
  exit 2
fi

sudo_cmd=()
[[ "$(id -u)" -ne 0 ]] && sudo_cmd=(sudo)

# curl: the README's Quickstart talks to the API with it.
packages=(python3 python3-venv python3-dev bubblewrap util-linux ca-certificates curl)
# gVisor's runsc (Debian's package; its ptrace platform needs no KVM); busybox, whose ls and stat stand in for
# coreutils' in gVisor sandboxes (sandbox/gvisor.py says why); tini, their PID 1 (sandbox/oci.py). bubblewrap stays:
# it is the other runtime.
[[ "$runtime" == gvisor || $dev -eq 1 ]] && packages+=(runsc busybox tini)
# nftables and systemd: tests/infra checks the firewall rules (nft --check) and the units (systemd-analyze);
# chromium: tests/dashboard drives the dashboard in headless Chromium. podman (with runc, its CNI plugins and DNS for
# containers) and debootstrap: tests/distribution boots Debian hosts with systemd, builds and runs the image.
[[ $dev -eq 1 ]] && packages+=(postgresql nftables systemd chromium podman runc debootstrap containernetworking-plugins
  golang-github-containernetworking-plugin-dnsname docker-registry)
# The docker client drives podman's Docker-compatible API in tests/distribution (`ash start --docker`).
[[ $dev -eq 1 ]] && ! command -v docker >/dev/null && packages+=(docker.io)
# The reference's TypeScript SDK and CLI are driven as outside clients in the tests (Node 18+ with npm).
[[ $dev -eq 1 ]] && ! command -v npm >/dev/null && packages+=(nodejs npm)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "==> apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  # The tests start a registry of their own on loopback; the package's service would listen on every interface.
  if [[ " ${missing[*]} " == *" docker-registry "* && -d /run/systemd/system ]]; then
    "${sudo_cmd[@]}" systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

# When root runs Ash from a folder the sandbox user cannot traverse (a clone under /root), the environment goes
# to /opt/ash/venv as a regular (non-editable) install, and .venv points there.
venv="${ASH_VENV:-$repo/.venv}"
editable=1
if [[ "$(id -u)" -eq 0 && -z "${ASH_VENV:-}" ]]; then
  if ! runuser -u nobody -- test -x "$repo" 2>/dev/null; then
    venv=/opt/ash/venv
    editable=0
  fi
fi

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  echo "==> creating $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv"
fi
[[ "$venv" != "$repo/.venv" ]] && ln -sfn "$venv" "$repo/.venv"

"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip uv
# The lock pins every package any extra can pull in; installing with it as constraints takes only what this
# install needs (the server and CLI; with --dev also the test, PostgreSQL, snapshot and distribution tools).
# postgres too: pointing ASH_DATABASE_URL at PostgreSQL must not need a second install.
extras="[postgres,s3,gcs]"
[[ $dev -eq 1 ]] && extras="[dev,postgres,s3,gcs,infra]"
echo "==> installing pinned dependencies"
# --compile-bytecode: every sandbox runs the bridge as a user that cannot write a bytecode cache, so whatever is
# not compiled here is compiled again, in memory, at every sandbox start (1.1 s of each bridge start, measured).
if [[ $editable -eq 1 ]]; then
  VIRTUAL_ENV="$venv" "$venv/bin/uv" pip install -q --compile-bytecode -c "$repo/requirements.lock" -e "$repo$extras"
else
  VIRTUAL_ENV="$venv" "$venv/bin/uv" pip install -q --compile-bytecode -c "$repo/requirements.lock" \
    --reinstall-package ash "$repo$extras"
fi
# uv compiles only what it installed now. Packages already there (a re-run over an older install) and an editable
# install's own packages (they stay in the checkout) are compiled here; what is up to date is skipped.
compile=("$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')")
[[ $editable -eq 1 ]] && compile+=("$repo/server/ash_server" "$repo/bridge/ash_bridge" "$repo/cli/ash_cli")
"$venv/bin/python" -m compileall -q -j 0 "${compile[@]}" >/dev/null
chmod -R a+rX "$venv"
echo "==> installed: $venv/bin/ash"
