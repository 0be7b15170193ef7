"""The disk quota of a sandbox: the space its session folder (workspace and home) takes, and the number of files,
folders and links in it (empty files take no space but cost every walk, fork and snapshot), watched.

Ash keeps workspaces as plain directories on the data dir's filesystem, where a per-directory quota needs project
quotas that few hosts enable (see docs/decisions/0004-bubblewrap.md). So the quota is measured: the sandbox is
stopped, with a clear reason, once its folders grow past it. Single files cannot outgrow it at all (RLIMIT_FSIZE,
see limits/base.py).
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .limits import MIB

MIN_INTERVAL_S = 2.0
# A walk may take at most this share of the time between walks: big workspaces are measured less often.
MAX_DUTY = 0.05
# At the end of a turn the folders are measured at once, unless that has proved slow for this sandbox.
EAGER_BUDGET_S = 0.05


class DiskUsage(NamedTuple):
    bytes: int
    # Files, folders and links (the inodes), a hard-linked file once.
    entries: int


def disk_usage(roots: Sequence[Path]) -> DiskUsage:
    """Bytes allocated under `roots` (st_blocks, so sparse files count what they use) and the entries there,
    symlinks not followed, hard links counted once."""
    total = 0
    entries_seen = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(r) for r in roots]
    while stack:
        path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
            entries_seen += 1
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return DiskUsage(total, entries_seen)


class DiskQuota:
    """Says when a sandbox's folders are over their quota (bytes, or entries).

    A sandbox that starts over its quota (after being stopped for it) may run, to clean up, but may not grow by
    more than a tenth of the quota until it is back under it.
    """

    def __init__(self, roots: Sequence[Path], limit_mb: int, limit_entries: int = 100_000) -> None:
        self.roots = list(roots)
        self.limit = DiskUsage(limit_mb * MIB, limit_entries)
        self.ceiling = self.limit
        self.used = DiskUsage(0, 0)
        self._walk_s = 0.0
        self._next = 0.0

    async def start(self) -> None:
        await self._measure()
        self.ceiling = DiskUsage(
            *(used + limit // 10 if used > limit else limit for used, limit in zip(self.used, self.limit, strict=True))
        )

    async def over(self, *, eager: bool = False) -> str | None:
        now = time.monotonic()
        if now >= self._next or (eager and self._walk_s <= EAGER_BUDGET_S):
            await self._measure()
        # Back under a limit, its tolerance ends: growing past the limit again stops the sandbox.
        self.ceiling = DiskUsage(
            *(
                limit if used <= limit else ceiling
                for used, limit, ceiling in zip(self.used, self.limit, self.ceiling, strict=True)
            )
        )
        if self.used.bytes > self.ceiling.bytes:
            return (
                f"sandbox exceeded its disk quota ({self.used.bytes / MIB:.1f} MiB used, "
                f"limit {self.limit.bytes // MIB} MiB); delete files or raise the agent's limits.diskMb"
            )
        if self.used.entries > self.ceiling.entries:
            return (
                f"sandbox exceeded its file count quota ({self.used.entries} files and folders, "
                f"limit {self.limit.entries}); delete files or raise the agent's limits.diskInodes"
            )
        return None

    async def _measure(self) -> None:
        started = time.monotonic()
        self.used = await asyncio.to_thread(disk_usage, self.roots)
        self._walk_s = time.monotonic() - started
        self._next = time.monotonic() + max(MIN_INTERVAL_S, self._walk_s / MAX_DUTY)
