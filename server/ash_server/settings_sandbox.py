"""The sandboxes' part of the server's settings (`Settings` in settings.py takes it in): how many, how they start,
their limits and the user they run as, the warm pool and the hot window. Read from `ASH_*` like the rest."""

from __future__ import annotations

import functools
import os
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings

from . import capabilities
from .sandbox.runtime_names import parse_tenant_runtimes


class SandboxSettings(BaseSettings):
    max_sandboxes: int = Field(1000, ge=1, description="Maximum number of live sandboxes.")

    bridge_start: Literal["exec", "fork"] = Field(
        "fork",
        description="How a sandbox's bridge starts: `exec`, a new interpreter that imports the SDK; `fork`, forked "
        "from a template process that imported it once (bubblewrap isolation with cgroup limits; otherwise, or after "
        "three failed forks in a row, exec).",
    )

    hot_window_ms: int = Field(
        600_000,
        ge=1000,
        validation_alias=AliasChoices("ASH_HOT_WINDOW_MS", "ASH_IDLE_TIMEOUT_MS", "hot_window_ms"),
        description="How long a session's sandbox (its connected CLI) stays up after a turn. Past it the session "
        "is persisted and its processes stop; the next message resumes the conversation on a new sandbox. "
        "ASH_IDLE_TIMEOUT_MS is the older name.",
    )

    warm_pool_size: int = Field(
        1,
        ge=0,
        description="Sandboxes kept started ahead for each recently used agent (bridge up, SDK client connected), "
        "so a new session does not wait for a process start. An agent's config `warmPoolSize` overrides it.",
    )

    warm_pool_recent_ms: int = Field(
        24 * 3_600_000,
        ge=0,
        description="An agent deployed, changed or given a session this recently gets ASH_WARM_POOL_SIZE warm "
        "sandboxes; others none (unless their config sets `warmPoolSize`).",
    )

    warm_pool_memory_mb: int = Field(
        0,
        ge=0,
        description="Memory the warm pool may hold, at an estimated 256 MiB per warm sandbox (0: an eighth of the "
        "machine's memory). The most recently used agents are served first.",
    )

    bridge_entry: str | None = Field(
        None,
        description="Command that starts the bridge inside a sandbox. Unset: the bundled bridge "
        "(`<python> -m ash_bridge`).",
    )

    bridge_start_timeout_ms: int = Field(
        60_000, ge=1000, description="How long a new sandbox may take to report ready."
    )

    max_concurrent_starts: int = Field(
        0,
        ge=0,
        description="Sandbox starts run at once; the rest wait their turn (a start is seconds of CPU). "
        "0: one per CPU core.",
    )

    start_queue_timeout_ms: int = Field(
        90_000,
        ge=1000,
        description="How long a session's sandbox start may wait for its turn before 503 with Retry-After "
        "(the wait does not count against ASH_BRIDGE_START_TIMEOUT_MS).",
    )

    sandbox_uid: int | None = Field(
        None,
        description="Host uid sandboxes run as when the server can switch users (root, or a non-root server with "
        "CAP_SETUID and CAP_SETGID). Unset: 65534 (nobody). Ignored when it cannot (sandboxes then run as the "
        "server's own user).",
    )

    sandbox_gid: int | None = Field(None, description="Host gid for sandboxes; see ASH_SANDBOX_UID.")

    sandbox_isolation: Literal["auto", "bwrap", "none"] = Field(
        "auto",
        description="How sandboxes are isolated: bwrap (namespaces), or none (explicit opt-out). auto: bwrap, and "
        "the server refuses to start if bwrap cannot run here.",
    )

    sandbox_runtime: Literal["bwrap", "gvisor"] = Field(
        "bwrap",
        description="The runtime of a sandbox whose agent and tenant do not choose one: bwrap (bubblewrap "
        "namespaces on the host kernel) or gvisor (runsc: gVisor's user-space kernel serves every system call; "
        "docs/security.md compares them). The server refuses to start if it cannot run this one; /health says "
        "which runtimes work here. Ignored with ASH_SANDBOX_ISOLATION=none.",
    )

    tenant_runtimes: str = Field(
        "",
        description="The runtime each tenant's sandboxes must use: `tenant=runtime` pairs, comma-separated, `*` "
        "for every tenant not named (e.g. `default=bwrap,*=gvisor`). A tenant named here runs its agents under "
        "that runtime only: an agent config `runtime` that differs is refused. Unnamed tenants' agents may choose.",
    )

    sandbox_memory_mb: int = Field(2048, ge=64, description="Memory limit of each sandbox (MiB); agents may lower.")

    sandbox_cpu_percent: int = Field(
        100, ge=1, le=100_000, description="CPU limit of each sandbox, in percent of one core; agents may lower."
    )

    sandbox_max_pids: int = Field(256, ge=32, description="Process and thread limit of each sandbox; agents may lower.")

    sandbox_disk_mb: int = Field(
        1024, ge=1, description="Disk quota of each session's workspace and home (MiB); agents may lower."
    )

    sandbox_disk_inodes: int = Field(
        100_000,
        ge=100,
        description="Files, folders and links each session's workspace and home may hold; agents may lower.",
    )

    exec_max_timeout_ms: int = Field(
        600_000, ge=1000, description="Longest timeout a POST /api/sessions/{id}/exec may ask for."
    )

    @field_validator("tenant_runtimes")
    @classmethod
    def _tenant_runtimes(cls, value: str) -> str:
        parse_tenant_runtimes(value)  # ValueError with the reason
        return value

    @functools.cached_property
    def tenant_runtime_map(self) -> dict[str, str]:
        """ASH_TENANT_RUNTIMES as tenant -> runtime; `*` is every tenant not named."""
        return parse_tenant_runtimes(self.tenant_runtimes)

    @functools.cached_property
    def sandbox_ids(self) -> tuple[int, int] | None:
        """(uid, gid) sandboxes switch to, or None when the server cannot switch users: decided by capability
        (CAP_SETUID and CAP_SETGID effective), not by uid, so a non-root server given them switches too (ADR 0008).
        Root always switches: a root server without them fails to start sandboxes rather than run them as root.
        Read once: a process's capabilities do not change while it runs."""
        if os.geteuid() != 0 and not capabilities.current().can_switch_users:
            return None
        uid = 65534 if self.sandbox_uid is None else self.sandbox_uid
        gid = uid if self.sandbox_gid is None else self.sandbox_gid
        return uid, gid
