"""A private network for multi-machine tests: a bridge on the host and network namespaces plugged into it.

Each namespace stands for a machine with its own address; the host (where PostgreSQL, the snapshot store, the fake
model and the coordinators run) is the bridge's address. Everything is created by the test and removed after.
"""

from __future__ import annotations

import os
import shutil
import subprocess


class Unavailable(Exception):
    pass


def _ip(*argv: str) -> None:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if result.returncode != 0:
        raise Unavailable(f"ip {' '.join(argv)}: {result.stderr.strip()}")


class Network:
    def __init__(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise Unavailable("network namespaces need root and iproute2 (`ip`)")
        tag = f"{os.getpid() % 10000:04d}"
        self.bridge = f"ashbr{tag}"
        self.subnet = 64 + os.getpid() % 128  # 10.<subnet>.0.0/24: unlikely to meet anything else on the host
        self.host = f"10.{self.subnet}.0.1"
        self.cidr = f"10.{self.subnet}.0.0/24"
        self._tag = tag
        self.namespaces: list[str] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except Unavailable:
            self.close()
            raise

    def machine(self, name: str) -> tuple[str, str]:
        """A namespace plugged into the bridge: (its name, its address)."""
        index = len(self.namespaces) + 2
        ns = f"ash{self._tag}{name}"[:15]
        outside, inside = f"ashv{self._tag}{index}"[:15], f"ashp{self._tag}{index}"[:15]
        address = f"10.{self.subnet}.0.{index}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", self.host)
        return ns, address

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def close(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # its veth end goes with it
        self.namespaces.clear()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
