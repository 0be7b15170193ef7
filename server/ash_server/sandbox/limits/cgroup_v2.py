"""cgroup v2: one cgroup per sandbox under the server's own (delegated) cgroup, `<own>/<instance>/<sandbox id>`.

Usable when the server may write its own cgroup and the memory and pids controllers are available to it (systemd
`Delegate=yes`, a container with its own cgroup namespace). Because v2 allows no processes in a cgroup that
hands controllers to children, a server that shares its cgroup with nobody moves itself into `<own>/server`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from . import cgroupfs
from .base import MIB, WEIGHT_BACKGROUND, WEIGHT_DEFAULT, Limits, file_size_argv

log = logging.getLogger(__name__)

WANTED = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


@dataclass
class CgroupV2Confinement:
    limits: Limits
    group: Path
    cpu: bool = False  # the cpu controller is enabled for the sandboxes

    @property
    def argv(self) -> list[str]:
        return [*cgroupfs.join_argv([self.group / "cgroup.procs"]), *file_size_argv(self.limits)]

    def breach(self) -> str | None:
        memory = cgroupfs.counters(self.group / "memory.events")
        if memory.get("oom_kill", 0) > 0 or memory.get("oom_group_kill", 0) > 0:
            return self.limits.out_of_memory()
        if cgroupfs.counters(self.group / "pids.events").get("max", 0) > 0:
            return self.limits.out_of_pids()
        return None

    def kill(self) -> None:
        try:
            cgroupfs.write(self.group / "cgroup.kill", "1")  # Linux 5.14+: atomic, fork bombs included
        except OSError:
            cgroupfs.kill_members([self.group])

    def join(self, pid: int) -> None:
        for procs in self.procs_files:
            cgroupfs.write(procs, str(pid))

    @property
    def procs_files(self) -> list[Path]:
        return [self.group / "cgroup.procs"]

    def prioritise(self, *, background: bool) -> None:
        if self.cpu:
            cgroupfs.write(self.group / "cpu.weight", str(WEIGHT_BACKGROUND if background else WEIGHT_DEFAULT))

    async def release(self) -> None:
        self.kill()
        await cgroupfs.remove([self.group])


class CgroupV2Backend:
    name = "cgroup-v2"

    def __init__(self, parent: Path, controllers: list[str]) -> None:
        self.parent = parent
        self.controllers = controllers

    @classmethod
    def detect(
        cls, instance: str, *, mountinfo: str | None = None, self_cgroup: str | None = None
    ) -> CgroupV2Backend | None:
        mountinfo = cgroupfs.read_text(cgroupfs.MOUNTINFO) if mountinfo is None else mountinfo
        own_path = cgroupfs.parse_self_cgroup(
            cgroupfs.read_text(cgroupfs.SELF_CGROUP) if self_cgroup is None else self_cgroup
        ).get("")
        mount = next((p for p, fstype, _ in cgroupfs.parse_mountinfo(mountinfo) if fstype == "cgroup2"), None)
        if mount is None or own_path is None:
            return None
        own = mount / own_path.lstrip("/")
        available = cgroupfs.read_text(own / "cgroup.controllers").split()
        controllers = [c for c in WANTED if c in available]
        if "memory" not in controllers or "pids" not in controllers or not os.access(own, os.W_OK):
            return None
        try:
            _delegate(own, controllers)
            parent = own / instance
            parent.mkdir(exist_ok=True)
            _enable(parent, controllers)
            backend = cls(parent, controllers)
            probe = backend.confine("probe-" + str(os.getpid()), Limits(64, 100, 64, 1))
            with contextlib.suppress(OSError):
                os.rmdir(probe.group)
        except OSError as exc:
            log.info("cgroup v2 is not usable: %s", exc)
            return None
        return backend

    def confine(self, sandbox_id: str, limits: Limits) -> CgroupV2Confinement:
        group = self.parent / sandbox_id
        group.mkdir(exist_ok=True)
        cgroupfs.write(group / "memory.max", str(limits.memory_mb * MIB))
        with contextlib.suppress(OSError):  # absent without swap accounting
            cgroupfs.write(group / "memory.swap.max", "0")
        # An OOM kill takes the whole sandbox down, not one process of it: the outcome is clear and the session
        # continues on a fresh sandbox.
        cgroupfs.write(group / "memory.oom.group", "1")
        cgroupfs.write(group / "pids.max", str(limits.cgroup_pids))
        if "cpu" in self.controllers:
            cgroupfs.write(group / "cpu.max", f"{CPU_PERIOD_US * limits.cpu_percent // 100} {CPU_PERIOD_US}")
        return CgroupV2Confinement(limits, group, cpu="cpu" in self.controllers)

    async def cleanup(self) -> int:
        return await cgroupfs.remove_children(self.parent)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.parent)


def _enable(group: Path, controllers: list[str]) -> None:
    cgroupfs.write(group / "cgroup.subtree_control", " ".join("+" + c for c in controllers))


def _delegate(own: Path, controllers: list[str]) -> None:
    """Enable the controllers for the children of the server's cgroup; move the server to a leaf if it must."""
    try:
        _enable(own, controllers)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        # "No internal processes": only a cgroup without members may hand controllers down. Move this server
        # into a leaf of its own, but never other processes that share the cgroup with it.
        if cgroupfs.members(own) != [os.getpid()]:
            raise
        leaf = own / "server"
        leaf.mkdir(exist_ok=True)
        cgroupfs.write(leaf / "cgroup.procs", str(os.getpid()))
        _enable(own, controllers)
