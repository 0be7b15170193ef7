"""The server itself: health, and a coordinator's runners."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import BIGINT_MAX, Public, Schema

# -- Health ---------------------------------------------------------------------------------------------------


class PoolStats(Schema):
    """This server's sandbox pool (docs/architecture/sandbox-pool.md)."""

    total: int = Field(description="Live sandboxes: warming + warm + waiting + running (what counts against capacity).")
    cold: int = Field(description="Sessions whose sandbox was stopped (evicted, idle, stopped, restart); files kept.")
    warming: int = Field(description="Starting.")
    warm: int = Field(description="Started ahead (warm pool), not yet claimed by a session.")
    waiting: int = Field(description="A session's, between turns.")
    running: int = Field(description="A session's, running a turn (never evicted).")
    max_capacity: int = Field(description="ASH_MAX_SANDBOXES.")
    resume_warm_hits: int = Field(description="Resumes that found the session's sandbox alive (since start).")
    resume_cold_hits: int = Field(description="Resumes and messages that started a sandbox for a session.")
    pre_warm_hits: int = Field(description="Sessions created on a warm sandbox (no process started).")
    evictions: int = Field(0, description="Idle sandboxes stopped to make room (since start).")
    starts_in_flight: int = Field(0, description="Sandbox starts running now (at most `startsLimit`).")
    starts_waiting: int = Field(0, description="Sandbox starts waiting for their turn (sandbox/admission.py).")
    starts_limit: int = Field(0, description="Sandbox starts run at once (ASH_MAX_CONCURRENT_STARTS, or the cores).")


class RuntimeHealth(Schema):
    """One sandbox runtime on this server (sandbox/runtimes.py)."""

    available: bool | None = Field(description="It starts sandboxes here; null while its probe still runs.")
    reason: str | None = Field(None, description="Why it cannot (or `being probed`).")


class HealthResponse(Schema):
    status: Literal["ok"]
    version: str
    coordinator_id: str
    active_sessions: int
    active_sandboxes: int
    remote_runners: int
    uptime: int = Field(description="Whole seconds since the server started (an integer, as the reference has it).")
    isolation: str = Field(
        description="How sandboxes are isolated by default (ASH_SANDBOX_RUNTIME): bwrap (namespaces), gvisor "
        "(runsc) or none."
    )
    runtimes: dict[str, RuntimeHealth] | None = Field(
        None,
        description="Every sandbox runtime (bwrap, gvisor) and whether it works on this server; an agent config "
        "`runtime` may name one that does. Null on a coordinator.",
    )
    network: str = Field(description="Network of a sandbox whose agent does not ask for more: none, or full.")
    limits: str = Field(description="What enforces sandbox limits: cgroup-v2, cgroup-v1 or rlimit.")
    bridge_start: str = Field(
        "exec", description="How sandbox bridges start now: fork (from the template process) or exec."
    )
    open_streams: int
    server_id: str = Field(description="This server's id: the `runnerId` of the sessions it runs.")
    snapshots: str | None = Field(description="Where snapshots go (ASH_SNAPSHOT_URL), or null when they are off.")
    pool: PoolStats
    mode: str = Field("standalone", description="standalone, coordinator or runner.")
    runners: list[RunnerPublic] | None = Field(
        None, description="Coordinator mode: every runner with its health and pool (`pool` sums the live ones)."
    )
    model_key: bool = Field(
        True, description="The server has a model key of its own (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN)."
    )


class ModelCheckResponse(Schema):
    key_configured: bool
    ok: bool = Field(description="The model accepted the server's key.")
    status: int | None = Field(description="The model's HTTP status for the probe; null when it was not reached.")
    error: str | None


# -- Runners (coordinator mode) -------------------------------------------------------------------------------


class RunnerRegistration(Schema):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: str = Field(pattern=r"^https?://[^/\s]+$", max_length=512)
    max_sandboxes: int = Field(ge=1, le=1_000_000)
    version: str = Field(max_length=64)


class RunnerHeartbeat(Schema):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    sandboxes: int = Field(ge=0, le=1_000_000)
    received: int = Field(ge=0, le=BIGINT_MAX)
    stats: dict[str, int] = Field(default_factory=dict)


class RunnerRef(Schema):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class RunnerPublic(Public):
    id: str
    url: str
    status: Literal["live", "draining", "dead"]
    max_sandboxes: int
    load: int = Field(description="Sandboxes it holds, counting sessions placed on it since its last heartbeat.")
    pool: dict[str, int] = Field(description="Its pool's counts at its last heartbeat (as /health's `pool`).")
    version: str
    registered_at: datetime
    last_heartbeat_at: datetime
    # The reference's names for the same runner (its `getRunnerInfoFromDb` shape).
    runner_id: str
    host: str
    port: int
    active: int
    max: int
    last_heartbeat: datetime


class RunnersResponse(Schema):
    runners: list[RunnerPublic]
    count: int
    has_local: bool = Field(description="Whether this server also runs sandboxes itself (never, on a coordinator).")
