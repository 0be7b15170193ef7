"""What every limits backend shares: the limits themselves and the per-sandbox `Confinement` interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MIB = 1024 * 1024
# cgroup v1 cpu.shares and v2 cpu.weight: the kernel's default, and the least each allows (a background sandbox
# then gets ~1/500 or ~1/100 of a contended CPU, and all of an idle one).
SHARES_DEFAULT, SHARES_BACKGROUND = 1024, 2
WEIGHT_DEFAULT, WEIGHT_BACKGROUND = 100, 1


@dataclass(frozen=True, slots=True)
class Limits:
    memory_mb: int
    cpu_percent: int
    max_pids: int
    disk_mb: int
    # Files, folders and links the session folder may hold: empty files take no blocks, so the byte quota alone
    # let 200,000 of them through (and every fork and snapshot then walked them all).
    disk_inodes: int = 100_000
    # What the cgroup's pids.max says when it is not max_pids: a gVisor sandbox's own host tasks (its kernel's
    # threads, ptrace's stub processes) count there too, many per process of the agent's (gvisor.host_pids).
    host_pids: int | None = None

    @property
    def cgroup_pids(self) -> int:
        return self.max_pids if self.host_pids is None else self.host_pids

    @property
    def file_size_bytes(self) -> int:
        """RLIMIT_FSIZE: the disk quota, which no single file may outgrow."""
        return self.disk_mb * MIB

    def out_of_memory(self) -> str:
        return f"sandbox ran out of memory (limit {self.memory_mb} MiB)"

    def out_of_pids(self) -> str:
        return f"sandbox hit its process limit ({self.max_pids} processes and threads)"


class Confinement(Protocol):
    """The limits of one sandbox, as enforced by one backend."""

    @property
    def argv(self) -> list[str]:
        """Prefix of the sandbox's argv: places the process under its limits, then execs the rest."""
        ...

    def breach(self) -> str | None:
        """Why the sandbox broke its limits (OOM kill, process limit), or None. Cheap: a few small reads."""
        ...

    def kill(self) -> None:
        """Kill every process under these limits."""
        ...

    def join(self, pid: int) -> None:
        """Put a running process in these limits' cgroups (a bridge forked from the template, which the argv
        prefix never ran for); only for a confinement with `procs_files`."""
        ...

    @property
    def procs_files(self) -> list[Path]:
        """The cgroup.procs files a process writes its pid to to join these limits ([] without cgroups: such
        sandboxes start their bridge the exec way, under the argv prefix)."""
        ...

    def prioritise(self, *, background: bool) -> None:
        """The sandbox's CPU share: `background` (a warm sandbox starting for nobody yet) gets the least, so that
        live turns run first; otherwise the default. A backend without a CPU controller leaves it alone."""
        ...

    async def release(self) -> None:
        """Kill what is left and remove what the backend created for this sandbox."""
        ...


def file_size_argv(limits: Limits) -> list[str]:
    """RLIMIT_FSIZE at the disk quota: a single file can never outgrow it (the writer gets EFBIG / SIGXFSZ).

    The quota itself covers the whole session folder and is watched (sandbox/disk.py); this makes the most common
    runaway, one huge file, fail at the write instead of a moment later.
    """
    return ["prlimit", f"--fsize={limits.file_size_bytes}", "--"]
