"""Watches one sandbox against its limits and names the cause when it breaks one."""

from __future__ import annotations

from typing import NamedTuple

from .disk import DiskQuota
from .limits import Confinement, Limits

POLL_INTERVAL_S = 1.0


class Breach(NamedTuple):
    """A broken limit: `cause` is `oom`, `pids` or `disk` (the label /metrics counts it under), `reason` the
    sentence the turn's error and the sandbox's log say."""

    cause: str
    reason: str


class SandboxGuard:
    """The limits of one sandbox: the backend's confinement (memory, CPU, processes) and its disk quota."""

    def __init__(self, limits: Limits, confinement: Confinement, disk: DiskQuota) -> None:
        self.limits = limits
        self.confinement = confinement
        self.disk = disk

    async def breach(self, *, eager: bool = False) -> Breach | None:
        """Why the sandbox must stop (out of memory, process limit, disk quota), or None.

        `eager` (end of a turn) measures the disk now unless that is slow for this sandbox; otherwise the disk
        is measured on its own schedule and only the cheap cgroup counters are read.
        """
        found = self.killed()
        if found is not None:
            return found
        reason = await self.disk.over(eager=eager)
        return Breach("disk", reason) if reason is not None else None

    def killed(self) -> Breach | None:
        """The memory or process limit the backend saw broken (the kernel may have killed a process for it)."""
        reason = self.confinement.breach()
        if reason is None:
            return None
        # A confinement reports only these two, in the words of its Limits.
        return Breach("pids" if reason == self.limits.out_of_pids() else "oom", reason)

    def kill(self) -> None:
        self.confinement.kill()

    async def release(self) -> None:
        await self.confinement.release()
