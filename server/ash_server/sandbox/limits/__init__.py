"""Resource limits of a sandbox (memory, CPU, processes, disk) and the mechanism that enforces them.

One mechanism is chosen at start (`detect_backend`), in this order: cgroup v2 when the server's own cgroup is
delegated to it, cgroup v1 when that is what the host has, rlimits as the last resort. Every backend turns
`Limits` into a `Confinement`: an argv prefix that puts the sandbox's first process under its limits before it
can run any code, counters that tell why a sandbox died, and clean-up. The disk quota is watched separately
(`sandbox/disk.py`): no backend can enforce it on a plain directory.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Protocol

from .base import MIB, Confinement, Limits
from .cgroup_v1 import CgroupV1Backend
from .cgroup_v2 import CgroupV2Backend
from .config import agent_limits, server_limits, validate_limits
from .rlimit import RlimitBackend

log = logging.getLogger(__name__)

__all__ = [
    "MIB",
    "Confinement",
    "Limits",
    "LimitsBackend",
    "agent_limits",
    "detect_backend",
    "instance_name",
    "server_limits",
    "validate_limits",
]


class LimitsBackend(Protocol):
    name: str

    def confine(self, sandbox_id: str, limits: Limits) -> Confinement: ...

    async def cleanup(self) -> int:
        """Remove what a previous run of this server left behind; how many sandboxes it found."""
        ...

    def close(self) -> None:
        """At shutdown, after every sandbox stopped: remove what is left (the empty per-server cgroups)."""
        ...


def instance_name(data_dir: Path) -> str:
    """Names this server's cgroups after its data dir: stable across restarts, distinct between servers."""
    return "ash-" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]


def detect_backend(data_dir: Path, uid: int) -> LimitsBackend:
    """The best mechanism that really works here (each candidate is probed by creating a cgroup); `uid` is the
    user sandboxes run as (rlimits count processes per user)."""
    instance = instance_name(data_dir)
    v2 = CgroupV2Backend.detect(instance)
    if v2 is not None:
        return v2
    v1 = CgroupV1Backend.detect(instance)
    if v1 is not None:
        return v1
    log.warning("no usable cgroup (v2 not delegated, v1 not writable): sandbox limits fall back to rlimits")
    return RlimitBackend(uid)
