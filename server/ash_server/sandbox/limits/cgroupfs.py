"""Helpers over the cgroup filesystem, shared by the v1 and v2 backends."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
SELF_CGROUP = Path("/proc/self/cgroup")

# A shell writes its own pid into every cgroup it is given, then execs the rest of its arguments: the sandbox is
# in its cgroups before any of its code runs, and the server runs no Python between fork and exec (ADR 0003).
JOIN_SCRIPT = 'for f do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"'


def join_argv(procs_files: Iterable[Path]) -> list[str]:
    return ["/bin/sh", "-c", JOIN_SCRIPT, "ash-cgroup-join", *(str(p) for p in procs_files), "--"]


def parse_mountinfo(text: str) -> list[tuple[Path, str, set[str]]]:
    """(mount point, filesystem type, super options) of every mount in /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts.append((Path(point), tail[0], set(tail[2].split(","))))
    return mounts


def parse_self_cgroup(text: str) -> dict[str, str]:
    """controller → cgroup path of this process; the v2 (unified) entry is under the key ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def read_text(path: Path) -> str:
    # os-level calls, not Path.read_text: every turn's end reads two of these files, and a text-mode file object
    # (buffer, decoder, wrapper) costs ten times the read itself. Control files are small: one read holds them.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, 65536).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def counters(path: Path) -> dict[str, int]:
    """A flat keyed file (`memory.events`, `pids.events`, `memory.oom_control`) as a dict."""
    values = {}
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return values


def write(path: Path, value: str) -> None:
    with path.open("w") as f:
        f.write(value)


def members(group: Path) -> list[int]:
    return [int(pid) for pid in read_text(group / "cgroup.procs").split() if pid.isdigit()]


def kill_members(groups: Iterable[Path]) -> int:
    killed = 0
    for group in groups:
        for pid in members(group):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


async def remove(groups: Iterable[Path], *, attempts: int = 60, delay: float = 0.05) -> None:
    """rmdir each cgroup, killing its members until it is empty (a dying process leaves a cgroup late)."""
    for group in groups:
        for _ in range(attempts):
            try:
                os.rmdir(group)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    log.warning("could not remove cgroup %s: %s", group, exc)
                    break
                kill_members([group])
                await asyncio.sleep(delay)
        else:
            log.warning("cgroup %s still has processes; left in place", group)


async def remove_children(parent: Path) -> int:
    """Remove every sandbox cgroup under `parent` (what a crashed server left behind); how many there were."""
    children = _subdirectories(parent)
    kill_members(children)
    await remove(children)
    return len(children)


def _subdirectories(parent: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
