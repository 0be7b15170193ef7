#!/bin/sh
# Entrypoint of the Ash image (tini runs it as PID 1's child): give the server a cgroup v2 subtree of its own so each
# sandbox gets memory, CPU and process limits, then start the server with only the capabilities it needs.
#
# cgroup v2 delegation needs a writable /sys/fs/cgroup. Docker mounts it read-only unless the container may remount
# it (CAP_SYS_ADMIN, AppArmor unconfined; see docs/self-hosting/docker.md). Whatever is missing, this script says so
# in one line and goes on: the server then falls back to rlimits and reports the mechanism in /health (`limits`).
# CAP_SYS_ADMIN is used here only, for the remount; the server never holds it.
set -eu

log() { echo "ash-entrypoint: $*" >&2; }

# ASH_CGROUP_ROOT exists for the tests (tests/infra/test_docker.py), which run this script on a cgroup2 mount of their own.
cgroup_root="${ASH_CGROUP_ROOT:-/sys/fs/cgroup}"
# The capabilities the server keeps (the same set as systemd/ash.service): switch sandboxes to their uid (SETUID,
# SETGID), own and manage their session folders (CHOWN, DAC_OVERRIDE, FOWNER), stop them (KILL).
server_caps="-all,+chown,+dac_override,+fowner,+kill,+setgid,+setuid"

setup_cgroup_v2() {
  [ "${ASH_CGROUP_SETUP:-auto}" = "off" ] && { log "cgroup setup disabled (ASH_CGROUP_SETUP=off)"; return 0; }
  if [ ! -f "$cgroup_root/cgroup.controllers" ]; then
    log "no cgroup v2 at $cgroup_root (cgroup v1 host?): sandbox limits fall back to what the server finds"
    return 0
  fi
  # Only the container's own subtree: with --cgroupns=private the mount's root is the container's cgroup.
  if [ "$(sed -n 's/^0:://p' /proc/self/cgroup)" != "/" ]; then
    log "not in a private cgroup namespace (run with --cgroupns=private): leaving cgroups alone"
    return 0
  fi
  if [ ! -w "$cgroup_root/cgroup.procs" ]; then
    if ! mount -o remount,rw "$cgroup_root" 2>/dev/null; then
      log "$cgroup_root is read-only and cannot be remounted (needs --cap-add SYS_ADMIN and" \
        "--security-opt apparmor=unconfined): sandbox limits fall back to rlimits"
      return 0
    fi
  fi
  # "No internal processes": the root may hand controllers to children only once it holds no process itself, so
  # everything here (tini, this shell) moves to a leaf first.
  mkdir -p "$cgroup_root/init" "$cgroup_root/ash"
  procs=$(cat "$cgroup_root/cgroup.procs")
  for pid in $procs; do
    echo "$pid" >"$cgroup_root/init/cgroup.procs" 2>/dev/null || true
  done
  wanted=""
  for controller in memory pids cpu; do
    grep -qw "$controller" "$cgroup_root/cgroup.controllers" && wanted="$wanted +$controller"
  done
  if [ -z "$wanted" ] || ! echo "$wanted" >"$cgroup_root/cgroup.subtree_control" 2>/dev/null; then
    log "could not enable cgroup controllers ($(cat "$cgroup_root/cgroup.controllers")): limits fall back"
    return 0
  fi
  # The server starts alone in ash/ and builds its own subtree there (server/ash_server/sandbox/limits/cgroup_v2.py).
  echo $$ >"$cgroup_root/ash/cgroup.procs"
  log "cgroup v2 delegated:$wanted"
}

if [ "$(id -u)" = "0" ]; then
  setup_cgroup_v2
  mkdir -p "${ASH_DATA_DIR:-/data}"
  if setpriv --bounding-set="$server_caps" --inh-caps=-all true 2>/dev/null; then
    exec setpriv --bounding-set="$server_caps" --inh-caps=-all -- "$@"
  fi
  log "cannot narrow the capability bounding set (no CAP_SETPCAP); starting with the container's capabilities"
fi
exec "$@"
