"""The warm pool: per agent, sandboxes started ahead for a session that does not exist yet (its folder and id are
reserved by the session service's `prepare_warm`, its model socket refuses traffic), handed over only to a session
whose profile key (profile.py) is the same. How many an agent gets is a `WarmPolicy`'s call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..errors import AshError, CapacityExhausted
from ..paths import remove_tree
from ..states import UNCLAIMED, SandboxState
from ..store.models import Agent
from .manager import SandboxRequest
from .pool import SandboxPool
from .profile import profile_key

log = logging.getLogger(__name__)

# How long the warm pool waits before retrying an agent whose warm sandbox failed to start.
WARM_RETRY_S = 30.0
MAINTAIN_INTERVAL_S = 30.0


class WarmPolicy(Protocol):
    def size(self, agent: Agent) -> int:
        """Warm sandboxes to keep for the agent (0: none)."""
        ...

    @property
    def may_want_any(self) -> bool:
        """False when no agent can want one: the pool then starts nothing without asking each agent."""
        ...


class ConfiguredWarmSize:
    """The agent's `warmPoolSize`, else ASH_WARM_POOL_SIZE."""

    def __init__(self, default: int) -> None:
        self.default = default

    def size(self, agent: Agent) -> int:
        size = agent.config.get("warmPoolSize")
        return size if isinstance(size, int) and size >= 0 else self.default

    @property
    def may_want_any(self) -> bool:
        return self.default > 0


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
        wanted: dict[str, tuple[Agent, int]] = {}
        sized = self.policy.may_want_any
        for agent in await pool.store.all_agents():
            size = self.policy.size(agent)
            sized = sized or size > 0
            if size > 0:
                wanted[profile_key(agent, {})] = (agent, size)
        # Warm sandboxes of an old version or config, or more than wanted, go.
        for entry in [e for e in pool.entries() if e.state == SandboxState.WARM]:
            want = wanted.get(entry.profile or "")
            if want is None or self._unclaimed(entry.profile) > want[1]:
                await pool.retire(entry)
        if not sized:
            return
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
