"""Hetzner machines for tests/distribution/test_hetzner_boot.py: a systemd Debian host that runs infra/hetzner's user
data as cloud-init would (detached, with a stand-in `cloud-init` command), receives what `pulumi up` sends over SSH
(ash_hetzner.delivery: the release by copy, the secrets file and the database password on stdin) by `podman exec`,
and a fake of Hetzner's metadata service for a runner's identity."""

from __future__ import annotations

import json
import shlex
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.distribution.podman import Host, podman

LOG = "/var/log/ash-boot.log"
USER_DATA = "/var/lib/cloud/instance/user-data.txt"  # where cloud-init keeps a machine's user data
# ash_hetzner.delivery's remote commands, as AshDelivery and DatabaseDelivery build them inline: `pulumi up` runs
# them over SSH; here `podman exec` does. While cloud-init runs, a first boot is waiting for the secrets file; after
# it, the delivery runs the kept boot script again.
RERUN = "if [ -e {boot} ] && ! cloud-init status 2>/dev/null | grep -q running; then bash {boot} >/dev/null; fi"
SET_PASSWORD = "cloud-init status --wait >/dev/null || true; runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1"


class HetznerHost:
    """One machine: `boot` starts its user data as cloud-init does, `deliver` is one of pulumi-command's SSH steps."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def cloud_init(self, status: str) -> None:
        """The stand-in for `cloud-init status` the deliveries ask (`running` during the first boot, then `done`)."""
        self.host.put("/usr/local/bin/cloud-init", f"#!/bin/sh\necho 'status: {status}'\n", mode="0755")

    def boot(self, user_data: str, *, detach: bool) -> None:
        """Run the user data as root, as cloud-init's scripts-user does: detached for a boot that waits for its
        deliveries, else to its end."""
        self.cloud_init("running" if detach else "done")
        self.host.sh(f"mkdir -p {Path(USER_DATA).parent}")
        self.host.put(USER_DATA, user_data, mode="0700")
        if detach:
            # A service, as cloud-final.service is. Its commands are traced to a file of their own (not through the
            # boot's `tee`): twice (a detached `podman exec`, then a plain service) a first boot ended without its
            # last log line and nothing said why; the trace and the unit's exit status say it if it happens again.
            trace = f"exec 9>/var/log/ash-user-data.trace; BASH_XTRACEFD=9 exec bash -x {USER_DATA}"
            self.host.sh(f"systemd-run --quiet --unit=ash-user-data --remain-after-exit bash -c {shlex.quote(trace)}")
        else:
            self.host.sh(f"bash {USER_DATA}", timeout=1200)

    def copy(self, local: Path, remote: str) -> None:
        """pulumi-command's CopyToRemote."""
        podman("cp", str(local), f"{self.host.name}:{remote}")

    def deliver(self, command: str, stdin: str, timeout: float = 1200) -> None:
        """pulumi-command's remote Command: `command` run by root's shell with the secret on its stdin."""
        result = podman("exec", "-i", self.host.name, "sh", "-c", command, input=stdin, check=False, timeout=timeout)
        assert result.returncode == 0, f"{command}\nexited {result.returncode}:\n{result.stderr[-4000:]}\n{self.log()}"

    def log(self) -> str:
        return self.host.sh(f"cat {LOG} 2>/dev/null || true", check=False).stdout

    def wait_log(self, marker: str, count: int = 1, limit_s: float = 1200) -> str:
        """The boot log once `marker` is in it `count` times (or a failure is); a failure or the limit fails."""
        deadline = time.monotonic() + limit_s
        while True:
            log = self.log()
            if "ash boot: FAILED" in log or "ash boot: no " in log:
                raise AssertionError(f"the boot on {self.host.name} failed:\n{log[-6000:]}\n{self.diagnose()}")
            if log.count(marker) >= count:
                return log
            show = "systemctl show ash-user-data -p SubState -p ExecMainCode -p ExecMainStatus"
            unit = self.host.sh(show, check=False)
            if "SubState=exited" in unit.stdout:
                time.sleep(3)
                if self.log().count(marker) < count:
                    trace = self.host.sh("tail -n 30 /var/log/ash-user-data.trace", check=False).stdout
                    journal = self.host.journal("ash-user-data", 15)
                    raise AssertionError(f"boot exited without {marker!r}: {unit.stdout}\n{trace}\n{journal}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} x{count} on {self.host.name} in {limit_s} s:\n{log[-6000:]}")
            time.sleep(2)

    def backing_file(self, mountpoint: str) -> str:
        """The file behind the loop device mounted at `mountpoint` (the volume's stand-in at its by-id path)."""
        script = f"losetup -nO BACK-FILE $(findmnt -no SOURCE {shlex.quote(mountpoint)})"
        return self.host.sh(script).stdout.strip()

    def diagnose(self) -> str:
        units = self.host.sh("systemctl --failed --no-legend || true", check=False).stdout
        return f"failed units: {units}\n{self.host.journal('ash', 30)}\n{self.host.journal('ash-runner', 30)}"


def fake_volume(host: Host, volume_id: str, device: str) -> None:
    """A Hetzner volume: a sparse file at the by-id path the volume would have (mount sets up the loop device)."""
    host.sh(f"mkdir -p {Path(device).parent} && truncate -s 1G {device}", check=True)
    assert volume_id in device


class FakeMetadata:
    """Hetzner's metadata service (http://169.254.169.254/hetzner/v1/metadata), the two keys a runner's boot reads:
    its instance id and its private network address, by the address asking."""

    def __init__(self, host: str) -> None:
        self.machines: dict[str, tuple[str, str]] = {}  # caller's address -> (instance id, private address)
        machines = self.machines

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                known = machines.get(self.client_address[0])
                key = self.path.rsplit("/", 1)[-1]
                body = None
                if known is not None and key == "instance-id":
                    body = known[0]
                elif known is not None and key == "private-networks":
                    body = f"- ip: {known[1]}\n  alias_ips: []\n  network_id: 1\n"
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or json.dumps({"error": "not found"})).encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hetzner/v1/metadata"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeMetadata:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
