"""rlimits: the last resort when no cgroup can be used (an unprivileged server without cgroup delegation).

Per process and coarse: memory is capped as address space (RLIMIT_AS; the CLI, a Bun binary, needs about 1 GiB
of it to start, more than it uses), single files at the disk quota. Processes are capped by RLIMIT_NPROC, which
the kernel counts per user, not per sandbox: every sandbox (and, for an unprivileged server, every process of its
user) shares one count. So a sandbox may add `max_pids` tasks to what its user runs when it starts: a fork bomb is
stopped, but it starves the other sandboxes of that user while it runs. There is no CPU share and no counter that
tells why a sandbox died.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from .base import MIB, Limits


@dataclass
class RlimitConfinement:
    limits: Limits
    nproc: int

    @property
    def argv(self) -> list[str]:
        limits = self.limits
        return [
            "prlimit",
            f"--as={limits.memory_mb * MIB}",
            f"--nproc={self.nproc}",
            f"--fsize={limits.file_size_bytes}",
            "--",
        ]

    def breach(self) -> str | None:
        return None

    def kill(self) -> None:
        return None

    def join(self, pid: int) -> None:
        # prlimit applies at exec, and the process count is per uid: nothing a running process can be put under.
        raise OSError(errno.EOPNOTSUPP, "rlimit limits have no cgroup to join")

    @property
    def procs_files(self) -> list[Path]:
        return []

    def prioritise(self, *, background: bool) -> None:
        return None  # no cgroup: a nice value would stay with the CLI after the claim, and only root may lower it

    async def release(self) -> None:
        return None


class RlimitBackend:
    name = "rlimit"

    def __init__(self, uid: int) -> None:
        self.uid = uid  # the user sandboxes run as

    def confine(self, sandbox_id: str, limits: Limits) -> RlimitConfinement:
        return RlimitConfinement(limits, nproc=tasks_of(self.uid) + limits.max_pids)

    async def cleanup(self) -> int:
        return 0

    def close(self) -> None:
        return None


def tasks_of(uid: int) -> int:
    """Threads of every process whose real uid is `uid`: what RLIMIT_NPROC counts."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            lines = Path(entry.path, "status").read_text().splitlines()
            status = dict(line.split(":", 1) for line in lines if ":" in line)
            if int(status["Uid"].split()[0]) == uid:
                total += int(status["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total
