"""Machines for the distribution tests: podman containers that stand for a user's hosts and images.

A *host* is Debian 12 booted with systemd as PID 1 (`podman run --privileged --systemd=always`) in a network
namespace of its own on a podman network the tests create (10.x, as tests/support/netns.py); the test process is the
network's gateway, where the fakes the hosts need (the model, moto, PostgreSQL) listen. The base image is built once
per content hash of tests/distribution/debian-base.sh and reused by every test of the run.

podman runs with tests/distribution/containers.conf (runc, cgroupfs, lowered ulimits: ../shared/notes/toolchain.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONTAINERS_CONF = HERE / "containers.conf"
BASE_SCRIPT = HERE / "debian-base.sh"
# Every container and network a test makes carries this label, its value the test process's pid, so a run can remove
# what an earlier, killed run left behind without touching a run that is still going.
LABEL_KEY = "ash-distribution-test"
LABEL = f"{LABEL_KEY}={os.getpid()}"


class Unavailable(Exception):
    """podman (or debootstrap) cannot run here; the message says what is missing."""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, input=input
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def check_available() -> None:
    if os.geteuid() != 0:
        raise Unavailable("the distribution tests run podman as root (systemd hosts need --privileged)")
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed (scripts/install.sh --dev installs it)")


def content_tag(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def debian_base() -> str:
    """The Debian 12 base image (systemd, python3), built by debootstrap unless this content hash exists."""
    name = f"localhost/ash-test-debian:{content_tag(BASE_SCRIPT)}"
    if not image_exists(name):
        result = subprocess.run(
            ["bash", str(BASE_SCRIPT), name], env=podman_env(), capture_output=True, text=True, timeout=1200
        )
        if result.returncode != 0:
            raise AssertionError(f"building {name} failed:\n{result.stdout}\n{result.stderr}")
    return name


@dataclass
class Network:
    """A podman network; the test process reaches its hosts, and they reach it, at `gateway`."""

    name: str
    subnet: int
    hosts_made: int = 0

    @property
    def gateway(self) -> str:
        return f"10.{self.subnet}.0.1"

    def next_address(self) -> str:
        """A fixed address for the next host: a machine keeps its address across reboots (podman would not)."""
        self.hosts_made += 1
        return f"10.{self.subnet}.0.{10 + self.hosts_made}"

    @classmethod
    def create(cls, prefix: str) -> Network:
        """A new network named PREFIX-PID: two test processes never share (or remove) one."""
        name = f"{prefix}-{os.getpid()}"
        subnet = 160 + os.getpid() % 64  # away from tests/support/netns.py's 64-191 as far as the pid allows
        for attempt in range(64):
            candidate = 160 + (subnet - 160 + attempt) % 64
            result = podman(
                "network", "create", "--label", LABEL, "--subnet", f"10.{candidate}.0.0/24", name, check=False
            )
            if result.returncode == 0:
                return cls(name, candidate)
        raise AssertionError(f"no free 10.x.0.0/24 for podman network {name}")

    def remove(self) -> None:
        podman("network", "rm", "-f", self.name, check=False, timeout=120)


@dataclass
class Host:
    """A container booted with systemd, standing for one machine."""

    name: str
    network: Network

    @classmethod
    def boot(
        cls, name: str, network: Network, image: str, volumes: Sequence[str] = (), publish: Sequence[str] = ()
    ) -> Host:
        podman("rm", "-f", "-t", "0", name, check=False)
        argv = ["run", "-d", "--name", name, "--hostname", name, "--label", LABEL, "--network", network.name]
        argv += ["--ip", network.next_address()]
        argv += ["--privileged", "--systemd=always", "--tmpfs", "/tmp"]
        for volume in volumes:
            argv += ["-v", volume]
        for port in publish:
            argv += ["-p", port]
        podman(*argv, image, "/sbin/init")
        host = cls(name, network)
        host.wait_booted()
        return host

    @property
    def address(self) -> str:
        result = podman("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", self.name)
        return result.stdout.strip()

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = ["exec", "-i"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        result = podman(*argv, self.name, "bash", "-euo", "pipefail", "-s", check=False, timeout=timeout, input=script)
        if check and result.returncode != 0:
            raise AssertionError(
                f"on {self.name}: exit {result.returncode}\n--- script\n{script}\n--- stdout\n{result.stdout[-6000:]}"
                f"\n--- stderr\n{result.stderr[-6000:]}"
            )
        return result

    def put(self, path: str, content: str, mode: str = "0644") -> None:
        """Write a file on the host as root (a script to run as cloud-init would run user data, say)."""
        quoted = shlex.quote(path)
        podman("exec", "-i", self.name, "sh", "-c", f"cat >{quoted} && chmod {mode} {quoted}", input=content)

    def wait_booted(self, limit_s: float = 180) -> str:
        """systemd's state once booting is over: `running`, or `degraded` with the failed units' names."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            state = podman(
                "exec", self.name, "systemctl", "is-system-running", "--wait", check=False, timeout=limit_s
            ).stdout.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    failed = podman("exec", self.name, "systemctl", "--failed", "--no-legend", check=False).stdout
                    return f"degraded: {failed.strip()}"
                return state
            time.sleep(1)
        raise AssertionError(f"{self.name} did not finish booting within {limit_s} s")

    def reboot(self) -> None:
        """A restart of the machine: systemd stops every unit, the container restarts, systemd boots again."""
        podman("restart", "-t", "60", self.name, timeout=180)
        self.wait_booted()

    def unit_state(self, unit: str) -> str:
        return podman("exec", self.name, "systemctl", "is-active", unit, check=False).stdout.strip()

    def journal(self, unit: str, lines: int = 200) -> str:
        return podman(
            "exec", self.name, "journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit, check=False
        ).stdout

    def remove(self) -> None:
        podman("rm", "-f", "-t", "5", self.name, check=False, timeout=120)


def _pid_alive(value: str) -> bool:
    try:
        os.kill(int(value), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Containers and networks of earlier runs whose process is gone (images stay: they are the cache)."""
    template = '{{.ID}} {{index .Labels "' + LABEL_KEY + '"}}'
    listed = podman("ps", "-a", "--filter", f"label={LABEL_KEY}", "--format", template, check=False).stdout
    for line in listed.splitlines():
        container, _, owner = line.partition(" ")
        if not _pid_alive(owner.strip()):
            podman("rm", "-f", "-t", "0", container, check=False, timeout=120)
    # `network ls` formats labels as a list of strings: read them from `network inspect` instead.
    for name in podman("network", "ls", "-q", "--filter", f"label={LABEL_KEY}", check=False).stdout.split():
        inspected = podman("network", "inspect", name, check=False).stdout
        labels = (json.loads(inspected)[0].get("labels") or {}) if inspected.strip() else {}
        if not _pid_alive(str(labels.get(LABEL_KEY, ""))):
            podman("network", "rm", "-f", name, check=False, timeout=120)
