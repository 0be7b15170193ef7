"""Watches one sandbox against its limits and names the cause when it breaks one."""

from __future__ import annotations

from .disk import DiskQuota
from .limits import Confinement, Limits

POLL_INTERVAL_S = 1.0


class SandboxGuard:
    """The limits of one sandbox: the backend's confinement (memory, CPU, processes) and its disk quota."""

    def __init__(self, limits: Limits, confinement: Confinement, disk: DiskQuota) -> None:
        self.limits = limits
        self.confinement = confinement
        self.disk = disk

    async def breach(self, *, eager: bool = False) -> str | None:
        """Why the sandbox must stop (out of memory, process limit, disk quota), or None.

        `eager` (end of a turn) measures the disk now unless that is slow for this sandbox; otherwise the disk
        is measured on its own schedule and only the cheap cgroup counters are read.
        """
        return self.confinement.breach() or await self.disk.over(eager=eager)

    def kill(self) -> None:
        self.confinement.kill()

    async def release(self) -> None:
        await self.confinement.release()
