"""The warm pool: per agent, sandboxes started ahead for a session that does not exist yet (its folder and id are
reserved by the session service's `prepare_warm`, its model socket refuses traffic), handed over only to a session
whose profile key (profile.py) is the same. How many an agent gets is a `WarmPolicy`'s call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from ..errors import AshError, CapacityExhausted
from ..paths import remove_tree
from ..states import UNCLAIMED, SandboxState
from ..store.models import Agent, utcnow
from .manager import SandboxRequest
from .pool import SandboxPool
from .profile import profile_key

log = logging.getLogger(__name__)

# How long the warm pool waits before retrying an agent whose warm sandbox failed to start.
WARM_RETRY_S = 30.0
MAINTAIN_INTERVAL_S = 30.0


# What one warm sandbox holds (bridge and connected CLI, ~220 MiB RSS measured: docs/benchmarks), rounded up: the
# unit ASH_WARM_POOL_MEMORY_MB is divided by.
WARM_SANDBOX_MIB = 256


class WarmPolicy(Protocol):
    async def wanted(self, agents: Sequence[Agent]) -> list[tuple[Agent, int]]:
        """The agents to keep warm sandboxes for and how many each (none left out is wanted), the most wanted
        first: the order they are started in when several are missing."""
        ...


class AgentUse(Protocol):
    async def agents_used_since(self, since: datetime) -> dict[tuple[str, str], datetime]: ...


def warm_budget(memory_mb: int) -> int:
    """How many warm sandboxes ASH_WARM_POOL_MEMORY_MB holds (0: an eighth of the machine's memory)."""
    if memory_mb == 0:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (8 * 1024 * 1024)
    return memory_mb // WARM_SANDBOX_MIB


class RecentAgents:
    """The default policy, as the reference pre-warms each agent: `default` sandboxes (ASH_WARM_POOL_SIZE) for each
    agent deployed, changed or given a session within `recent_s`; an agent's config `warmPoolSize` is its own
    (recent or not). All within `budget` sandboxes: own sizes first, then the most recently used agents."""

    def __init__(
        self,
        usage: AgentUse,
        *,
        default: int,
        recent_s: float,
        budget: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._usage = usage
        self.default = default
        self.recent_s = recent_s
        self.budget = budget
        self._clock = clock

    async def wanted(self, agents: Sequence[Agent]) -> list[tuple[Agent, int]]:
        since = self._clock() - timedelta(seconds=self.recent_s)
        scan = self.default > 0 and self.recent_s > 0 and self.budget > 0
        used = await self._usage.agents_used_since(since) if scan else {}

        def last_use(agent: Agent) -> datetime:
            return max(agent.updated_at, used.get((agent.tenant_id, agent.name), agent.updated_at))

        own: list[tuple[Agent, int]] = []
        recent: list[tuple[Agent, int]] = []
        for agent in sorted(agents, key=last_use, reverse=True):
            size = agent.config.get("warmPoolSize")
            if isinstance(size, int) and size >= 0:
                own.append((agent, size))
            elif scan and last_use(agent) >= since:
                recent.append((agent, self.default))
        left = self.budget
        chosen: list[tuple[Agent, int]] = []
        for agent, size in own + recent:
            take = min(size, left)
            if take > 0:
                chosen.append((agent, take))
                left -= take
        return chosen


# Reserve a session id and folder for a warm sandbox of an agent: (session id, request), or None if impossible.
WarmPreparer = Callable[[Agent], Awaitable[tuple[str, SandboxRequest] | None]]


class WarmPool:
    def __init__(self, pool: SandboxPool, policy: WarmPolicy, *, prepare: WarmPreparer) -> None:
        """`prepare`: the session service's, which reserves a session's id and folder the way a create does."""
        self._pool = pool
        self.policy = policy
        self._prepare = prepare
        self._wake = pool.changed  # the pool sets it when room comes free or it closes
        self._failed: dict[str, float] = {}

    def wake(self) -> None:
        self._wake.set()

    def agents_changed(self) -> None:
        """An agent was deployed, changed or deleted: bring the warm pool in line now."""
        self._failed.clear()
        self._wake.set()

    async def maintain(self) -> None:
        """Keep the warm pool filled and current, until the pool closes (or this is cancelled)."""
        while not self._pool.closing:
            try:
                await self.replenish()
                self._pool.sync_states()
            except Exception:
                log.exception("warm pool maintenance failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=MAINTAIN_INTERVAL_S)
            self._wake.clear()

    def _unclaimed(self, profile: str | None) -> int:
        return sum(1 for e in self._pool.entries() if e.state in UNCLAIMED and e.profile == profile)

    async def replenish(self) -> None:
        pool = self._pool
        wanted = {
            profile_key(agent, {}): (agent, size)
            for agent, size in await self.policy.wanted(await pool.store.all_agents())
        }
        # Warm sandboxes of an old version or config, of an agent no longer wanted, or more than wanted, go.
        for entry in [e for e in pool.entries() if e.state == SandboxState.WARM]:
            want = wanted.get(entry.profile or "")
            if want is None or self._unclaimed(entry.profile) > want[1]:
                await pool.retire(entry)
        now = time.monotonic()
        for profile, (agent, size) in wanted.items():
            if now - self._failed.get(profile, -WARM_RETRY_S) < WARM_RETRY_S:
                continue
            have = self._unclaimed(profile)
            while have < size and not pool.closing and pool.occupied < pool.max_sandboxes:
                if not await self._start(agent, profile):
                    self._failed[profile] = time.monotonic()
                    break
                have += 1

    async def _start(self, agent: Agent, profile: str) -> bool:
        pool = self._pool
        try:
            slot = await pool.reserve(None)
        except CapacityExhausted:
            return False
        prepared = None
        started = False
        try:
            prepared = await self._prepare(agent)
            if prepared is not None:
                owner = (agent.tenant_id, agent.name)
                await pool.start(prepared[1], slot, state=SandboxState.WARM, profile=profile, agent=owner)
                started = True
        except (AshError, OSError) as exc:
            message = exc.message if isinstance(exc, AshError) else str(exc)
            log.warning("warm sandbox for agent %s/%s failed to start: %s", agent.tenant_id, agent.name, message)
        finally:
            slot.release()
            if prepared is not None and not started:  # failed, or cancelled at shutdown: its folder goes too
                await remove_tree(pool.data.session(agent.tenant_id, prepared[0]))
        return started
