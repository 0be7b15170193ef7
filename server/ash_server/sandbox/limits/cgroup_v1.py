"""cgroup v1: one cgroup per sandbox in each of the memory, pids and (when mounted) cpu hierarchies.

The sandbox cgroups live under the server's own cgroup of each hierarchy, in `<instance>/<sandbox id>`, so they
stay inside whatever limits the server itself runs under, and a restarted server finds its leftovers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from . import cgroupfs
from .base import MIB, SHARES_BACKGROUND, SHARES_DEFAULT, Limits, file_size_argv

log = logging.getLogger(__name__)

REQUIRED = ("memory", "pids")
OPTIONAL = ("cpu",)
CFS_PERIOD_US = 100_000


@dataclass
class CgroupV1Confinement:
    limits: Limits
    groups: dict[str, Path]  # controller → this sandbox's cgroup directory

    @property
    def argv(self) -> list[str]:
        return [*cgroupfs.join_argv(g / "cgroup.procs" for g in self._distinct()), *file_size_argv(self.limits)]

    def _distinct(self) -> list[Path]:
        return list(dict.fromkeys(self.groups.values()))  # co-mounted controllers share one directory

    def breach(self) -> str | None:
        if cgroupfs.counters(self.groups["memory"] / "memory.oom_control").get("oom_kill", 0) > 0:
            return self.limits.out_of_memory()
        if cgroupfs.counters(self.groups["pids"] / "pids.events").get("max", 0) > 0:
            return self.limits.out_of_pids()
        return None

    def kill(self) -> None:
        cgroupfs.kill_members(self._distinct())

    def join(self, pid: int) -> None:
        for procs in self.procs_files:
            cgroupfs.write(procs, str(pid))

    @property
    def procs_files(self) -> list[Path]:
        return [group / "cgroup.procs" for group in self._distinct()]

    def prioritise(self, *, background: bool) -> None:
        if "cpu" in self.groups:
            shares = SHARES_BACKGROUND if background else SHARES_DEFAULT
            cgroupfs.write(self.groups["cpu"] / "cpu.shares", str(shares))

    async def release(self) -> None:
        await cgroupfs.remove(self._distinct())


class CgroupV1Backend:
    name = "cgroup-v1"

    def __init__(self, parents: dict[str, Path]) -> None:
        self.parents = parents  # controller → <server's cgroup>/<instance>

    @classmethod
    def detect(
        cls, instance: str, *, mountinfo: str | None = None, self_cgroup: str | None = None
    ) -> CgroupV1Backend | None:
        mountinfo = cgroupfs.read_text(cgroupfs.MOUNTINFO) if mountinfo is None else mountinfo
        own = cgroupfs.parse_self_cgroup(
            cgroupfs.read_text(cgroupfs.SELF_CGROUP) if self_cgroup is None else self_cgroup
        )
        mounts: dict[str, Path] = {}
        for point, fstype, options in cgroupfs.parse_mountinfo(mountinfo):
            if fstype == "cgroup":
                for controller in (*REQUIRED, *OPTIONAL):
                    if controller in options:
                        mounts.setdefault(controller, point)
        if not all(c in mounts and c in own for c in REQUIRED):
            return None
        parents = {
            c: mounts[c] / own[c].lstrip("/") / instance for c in (*REQUIRED, *OPTIONAL) if c in mounts and c in own
        }
        backend = cls(parents)
        return backend if backend._probe() else None

    def _probe(self) -> bool:
        """Really create a cgroup with a limit (root, writable hierarchies), then remove it."""
        probe = None
        try:
            probe = self.confine("probe-" + str(os.getpid()), Limits(64, 100, 64, 1))
            return True
        except OSError as exc:
            log.info("cgroup v1 is not usable: %s", exc)
            return False
        finally:
            if probe is not None:
                for group in reversed(probe._distinct()):
                    with contextlib.suppress(OSError):
                        os.rmdir(group)

    def confine(self, sandbox_id: str, limits: Limits) -> CgroupV1Confinement:
        groups = {controller: parent / sandbox_id for controller, parent in self.parents.items()}
        confinement = CgroupV1Confinement(limits, groups)
        for group in confinement._distinct():
            group.mkdir(parents=True, exist_ok=True)
        memory = groups["memory"]
        cgroupfs.write(memory / "memory.limit_in_bytes", str(limits.memory_mb * MIB))
        # With swap accounting, memory+swap gets the same ceiling: the sandbox cannot swap its way past it.
        if (memory / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(OSError):
                cgroupfs.write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_mb * MIB))
        cgroupfs.write(groups["pids"] / "pids.max", str(limits.cgroup_pids))
        if "cpu" in groups:
            cgroupfs.write(groups["cpu"] / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            cgroupfs.write(groups["cpu"] / "cpu.cfs_quota_us", str(CFS_PERIOD_US * limits.cpu_percent // 100))
        return confinement

    async def cleanup(self) -> int:
        found = 0
        for parent in dict.fromkeys(self.parents.values()):
            found = max(found, await cgroupfs.remove_children(parent))
        return found

    def close(self) -> None:
        for parent in dict.fromkeys(self.parents.values()):
            with contextlib.suppress(OSError):
                os.rmdir(parent)
