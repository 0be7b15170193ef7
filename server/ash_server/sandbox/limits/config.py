"""Limits from configuration: the server's (ASH_SANDBOX_*) and an agent's `config.limits`.

    PATCH /api/agents/{name}/config  {"limits": {"memoryMb": 512, "cpuPercent": 50, "maxPids": 64, "diskMb": 100,
                                                  "diskInodes": 20000}}

The server's limits are the defaults and the ceilings: an agent may ask for less, never for more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ...errors import Invalid
from ...settings import Settings
from .base import Limits

log = logging.getLogger(__name__)

# config key → (Limits field, smallest accepted value)
KEYS = {
    "memoryMb": ("memory_mb", 32),
    "cpuPercent": ("cpu_percent", 1),
    "maxPids": ("max_pids", 16),
    "diskMb": ("disk_mb", 1),
    "diskInodes": ("disk_inodes", 100),
}


def server_limits(settings: Settings) -> Limits:
    return Limits(
        memory_mb=settings.sandbox_memory_mb,
        cpu_percent=settings.sandbox_cpu_percent,
        max_pids=settings.sandbox_max_pids,
        disk_mb=settings.sandbox_disk_mb,
        disk_inodes=settings.sandbox_disk_inodes,
    )


def validate_limits(raw: Any, ceiling: Limits) -> Limits:
    """An agent's `config.limits`, or Invalid (400) with the reason: what PATCH /config checks before storing."""
    return _parse(raw, ceiling, strict=True)


def agent_limits(config: Mapping[str, Any], ceiling: Limits) -> Limits:
    """The limits of a sandbox of an agent with this config. Values above the server's (it may have been
    restarted with lower ones since the agent was configured) are lowered to the server's."""
    return _parse(config.get("limits") or {}, ceiling, strict=False)


def _parse(raw: Any, ceiling: Limits, *, strict: bool) -> Limits:
    if raw is None:
        return ceiling
    if not isinstance(raw, Mapping):
        raise Invalid('limits must be an object like {"memoryMb": 512, "maxPids": 64}', limits=raw)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise Invalid(f"unknown limits {unknown}; known: {sorted(KEYS)}", limits=dict(raw))
    limits = ceiling
    for key, value in raw.items():
        if value is None:
            continue
        field, smallest = KEYS[key]
        highest = getattr(ceiling, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise Invalid(f"limits.{key} must be a whole number of at least {smallest}", **{key: value})
        if value > highest:
            if strict:
                raise Invalid(
                    f"limits.{key} {value} is above this server's limit of {highest} "
                    "(the ASH_SANDBOX_* settings are the ceiling)",
                    **{key: value},
                )
            log.warning("limits.%s %d is above the server's %d; using %d", key, value, highest, highest)
            value = highest
        limits = replace(limits, **{field: value})
    return limits
