#!/usr/bin/env bash
# Builds the Debian 12 image every distribution test starts from, as a machine would come: debootstrap's minbase
# plus systemd (PID 1 of the "hosts"), dbus, python3 (Ansible's target interpreter), sudo and iproute2. No registry
# is reachable on these machines, so this stands in for `debian:bookworm` both as a host and as the Dockerfile's
# DEBIAN_IMAGE.
#   debian-base.sh IMAGE      e.g. debian-base.sh localhost/ash-test-debian:0123abcd
# The one thing added that a user's machine would not have is this machine's own: package downloads here go through a
# TLS-intercepting proxy, whose CA (in /usr/local/share/ca-certificates) the image trusts, for apt, pip and uv alike.
set -euo pipefail
image="$1"
mirror="${ASH_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root="$(mktemp -d /var/tmp/ash-debian-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,sudo,ca-certificates,iproute2 \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -50 "$root.log" >&2; exit 1; }
rm -f "$root.log"

shopt -s nullglob
certs=(/usr/local/share/ca-certificates/*.crt)
if [[ ${#certs[@]} -gt 0 ]]; then
  cp "${certs[@]}" "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
  mkdir -p "$root/etc/uv"
  printf 'native-tls = true\n' >"$root/etc/uv/uv.toml"
fi
# A container has no console to log in on, and the machine-id is made at first boot, as on a cloud image.
chroot "$root" systemctl mask getty@tty1.service serial-getty@.service console-getty.service >/dev/null 2>&1 || true
: >"$root/etc/machine-id"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" --numeric-owner -c . | podman import --change 'CMD ["/sbin/init"]' - "$image" >/dev/null
echo "$image"
