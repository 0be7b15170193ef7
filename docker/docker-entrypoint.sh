#!/bin/sh
# Entrypoint of the Ash image (tini runs it as PID 1's child): give the server a cgroup v2 subtree of its own so each
# sandbox gets memory, CPU and process limits, then start the server as the non-root `ash` user with only the
# capabilities it needs (docs/decisions/0008-non-root-server.md). This script is the only thing that runs as root.
#
# cgroup v2 delegation needs a writable /sys/fs/cgroup. Docker mounts it read-only unless the container may remount
# it (CAP_SYS_ADMIN, AppArmor unconfined; see docs/self-hosting/docker.md). Whatever is missing, this script says so
# in one line and goes on: the server then falls back to rlimits and reports the mechanism in /health (`limits`).
# CAP_SYS_ADMIN is used here only, for the remount; the server never holds it.
set -eu

log() { echo "ash-entrypoint: $*" >&2; }
# Whether this shell holds capability number $1 (capability.h: 8 is CAP_SETPCAP) in its effective set.
has_capability() {
  effective=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
  [ $(((0x$effective >> $1) & 1)) = 1 ]
}

# ASH_CGROUP_ROOT exists for the tests (tests/infra/test_docker.py), which run this script on a cgroup2 mount of their own.
cgroup_root="${ASH_CGROUP_ROOT:-/sys/fs/cgroup}"
# The user the server runs as: the image's `ash` (ASH_SERVER_UID/GID in the Dockerfile).
server_uid="${ASH_SERVER_UID:-10000}"
server_gid="${ASH_SERVER_GID:-$server_uid}"
# The capabilities it keeps, as ambient and bounding sets (the same set as systemd/ash.service): switch sandboxes to
# their uid (SETUID, SETGID), own and manage their session folders (CHOWN, DAC_OVERRIDE, FOWNER), stop them (KILL).
# The server clears them all from every sandbox's process.
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
  # The server starts alone in ash/ and builds its own subtree there (server/ash_server/sandbox/limits/cgroup_v2.py);
  # ash/ is delegated to its user as systemd's Delegate=yes does (the folder and the files that move processes);
  # should that fail, the server's DAC_OVERRIDE still lets it write there.
  echo $$ >"$cgroup_root/ash/cgroup.procs"
  for file in "" /cgroup.procs /cgroup.subtree_control /cgroup.threads; do
    if [ -e "$cgroup_root/ash$file" ]; then chown "$server_uid:$server_gid" "$cgroup_root/ash$file" || true; fi
  done
  log "cgroup v2 delegated:$wanted"
}

if [ "$(id -u)" = "0" ]; then
  setup_cgroup_v2
  data_dir="${ASH_DATA_DIR:-/data}"
  # A data dir that already exists (a volume, a bind-mounted ~/.ash) keeps its owner: the server's DAC_OVERRIDE and
  # FOWNER let it work there, and the host user keeps its folder.
  if [ ! -d "$data_dir" ]; then
    mkdir -p "$data_dir"
    chown "$server_uid:$server_gid" "$data_dir"
  fi
  # setpriv: the server's uid and gid, no supplementary groups, and the capabilities above as its inheritable,
  # ambient (they survive the exec of a non-root program) and bounding sets; everything else is gone for good.
  to_server="--reuid=$server_uid --regid=$server_gid --clear-groups --inh-caps=$server_caps --ambient-caps=$server_caps"
  # setpriv leaves the bounding set as it is, without a word, when it lacks CAP_SETPCAP: ask first.
  if has_capability 8; then
    to_server="$to_server --bounding-set=$server_caps"
  else
    log "no CAP_SETPCAP to narrow the capability bounding set: the server's stays the container's"
  fi
  # shellcheck disable=SC2086 # $to_server: options without spaces, split on purpose
  if setpriv $to_server true 2>/dev/null; then
    # shellcheck disable=SC2086
    exec setpriv $to_server -- "$@"
  fi
  log "cannot switch to uid $server_uid (no CAP_SETUID/CAP_SETGID?); starting as root with the container's" \
    "capabilities"
fi
exec "$@"
