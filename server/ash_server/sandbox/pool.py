"""The sandbox pool: which sandboxes this server runs, in which state, within what capacity.

States (docs/architecture/sandbox-pool.md):

    warming ──▶ warm ──claim──▶ waiting ◀──▶ running
       │                          │  evicted, idle, stopped, crashed, server restarted
       └──(a session's own start)─┘──────────────────────────────▶ cold (row only: files persisted)

Every state is a row of the `sandboxes` table (owned by this server's id), so a restarted server knows what its
predecessor ran: it kills those processes and keeps their sessions as `cold`. Live sandboxes count against
ASH_MAX_SANDBOXES; when a new one is needed and the pool is full, warm (unclaimed) sandboxes go first, then the
least recently used `waiting` one, persisted first by the session service (`evictor`). `running` sandboxes are
never evicted: with all of them running, a new start is a 503.

The warm pool keeps, per agent, ASH_WARM_POOL_SIZE (or the agent's `warmPoolSize`) sandboxes started ahead for a
session that does not exist yet: its folder and id are reserved (see SessionService.prepare_warm), its model
socket refuses traffic, and it is handed over only to a session whose profile key (profile.py) is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AshError, CapacityExhausted, SandboxError
from ..observability.metrics import Metrics
from ..paths import DataDir
from ..states import UNCLAIMED, SandboxState, SessionStatus
from ..store.models import Agent, utcnow
from ..store.models import Sandbox as SandboxRow
from ..store.repository import Store
from .manager import SandboxManager, SandboxRequest
from .sandbox import Sandbox

log = logging.getLogger(__name__)

# How long the warm pool waits before retrying an agent whose warm sandbox failed to start.
WARM_RETRY_S = 30.0
MAINTAIN_INTERVAL_S = 30.0


@dataclass(eq=False)
class PoolEntry:
    """A live sandbox of this server."""

    sandbox: Sandbox
    tenant_id: str
    # The session it serves, or (warming/warm) the id reserved for the session that will claim it.
    session_id: str
    state: SandboxState = SandboxState.WARMING
    # Warm pool sandboxes: what they were started for (profile.py) and for which agent (tenant, name).
    profile: str | None = None
    agent: tuple[str, str] | None = None
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    # Claimed, its session not inserted yet: never a victim in between.
    claiming: bool = False
    # The state its row says. `waiting` ⇄ `running` changes reach the row in the background (`sync_states`), never
    # on a turn's path: on SQLite a write there would contend with the turn's own.
    recorded: SandboxState = SandboxState.WARMING

    @property
    def id(self) -> str:
        return self.sandbox.id


class Slot:
    """Room for one sandbox, held from the capacity check to the moment the sandbox exists (or failed to)."""

    def __init__(self, pool: SandboxPool) -> None:
        self._pool = pool
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._pool._reserved -= 1


# Persist a session's sandbox and stop it; False if it could not be evicted now (busy).
Evictor = Callable[[PoolEntry, str], Awaitable[bool]]
# Reserve a session id and folder for a warm sandbox of an agent: (session id, request), or None if impossible.
WarmPreparer = Callable[[Agent], Awaitable[tuple[str, SandboxRequest] | None]]
ProfileOf = Callable[[Agent, dict[str, Any]], str]


class SandboxPool:
    def __init__(
        self,
        store: Store,
        manager: SandboxManager,
        data: DataDir,
        *,
        server_id: str,
        max_sandboxes: int,
        warm_pool_size: int,
    ) -> None:
        self._store = store
        self._manager = manager
        self._data = data
        self.server_id = server_id
        self.max_sandboxes = max_sandboxes
        self.warm_pool_size = warm_pool_size
        self._entries: dict[str, PoolEntry] = {}
        self._reserved = 0
        self._cold = 0
        self.evictor: Evictor | None = None
        self.prepare_warm: WarmPreparer | None = None
        self.profile_of: ProfileOf | None = None
        self.pre_warm_hits = 0
        self.resume_warm_hits = 0
        self.resume_cold_hits = 0
        self.evictions = 0
        self.metrics: Metrics | None = None  # set by the app once metrics exist
        self._wake = asyncio.Event()
        self._warm_failed: dict[str, float] = {}
        self._closing = False
        self._writes: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        manager.on_exited = self._exited

    # -- Queries ------------------------------------------------------------------------------------------------

    def entry(self, sandbox_id: str) -> PoolEntry | None:
        return self._entries.get(sandbox_id)

    def entries(self) -> list[PoolEntry]:
        return list(self._entries.values())

    def _occupied(self) -> int:
        return len(self._entries) + self._reserved

    @property
    def occupied(self) -> int:
        """Sandboxes that exist or are being started (warm ones included)."""
        return self._occupied()

    def counts(self) -> dict[str, int]:
        """Sandboxes by state (cold: this server's sessions whose sandbox is gone, files persisted)."""
        counts: dict[str, int] = dict.fromkeys(SandboxState, 0)
        for entry in self._entries.values():
            counts[entry.state] += 1
        counts[SandboxState.COLD] = self._cold
        return counts

    async def stats(self) -> dict[str, int]:
        """What /health reports (and /metrics could): counts by state, capacity and hit counters."""
        self._cold = await self._store.count_sandboxes(self.server_id, SandboxState.COLD)
        counts = self.counts()
        return {
            **counts,
            "total": sum(n for state, n in counts.items() if state != SandboxState.COLD),
            "maxCapacity": self.max_sandboxes,
            "resumeWarmHits": self.resume_warm_hits,
            "resumeColdHits": self.resume_cold_hits,
            "preWarmHits": self.pre_warm_hits,
            "evictions": self.evictions,
        }

    # -- Capacity -----------------------------------------------------------------------------------------------

    async def reserve(self, *, evict: bool = True) -> Slot:
        """Room for one more sandbox: evict warm sandboxes, then the least recently used idle one, if needed.
        CapacityExhausted (503) when everything left is running a turn or starting."""
        tried: set[str] = set()
        while self._occupied() >= self.max_sandboxes:
            victim = self._victim(tried) if evict else None
            if victim is None:
                running = sum(1 for e in self._entries.values() if e.state == SandboxState.RUNNING)
                if running == len(self._entries) and not self._reserved:
                    message = f"all {self.max_sandboxes} sandboxes are running turns; try again when one finishes"
                else:
                    message = f"all {self.max_sandboxes} sandboxes are busy (running turns or starting); try again"
                raise CapacityExhausted(message, max_sandboxes=self.max_sandboxes, running=running)
            tried.add(victim.id)
            if victim.state == SandboxState.WARM:
                await self.retire(victim)
            elif self.evictor is not None and await self.evictor(victim, "capacity"):
                self.evictions += 1
                log.info("evicted sandbox %s of session %s (pool full)", victim.id, victim.session_id)
        self._reserved += 1
        return Slot(self)

    def _victim(self, tried: set[str]) -> PoolEntry | None:
        warm = [e for e in self._entries.values() if e.state == SandboxState.WARM and e.id not in tried]
        if warm:
            return min(warm, key=lambda e: e.created)
        idle = [
            e
            for e in self._entries.values()
            if e.state == SandboxState.WAITING and not e.claiming and e.id not in tried
        ]
        return min(idle, key=lambda e: e.last_used) if idle else None

    # -- Starting -----------------------------------------------------------------------------------------------

    async def start(
        self,
        request: SandboxRequest,
        slot: Slot,
        *,
        state: SandboxState = SandboxState.WAITING,
        profile: str | None = None,
        agent: tuple[str, str] | None = None,
    ) -> Sandbox:
        """Start a sandbox in the room `slot` holds; it enters the pool as `warming`, then `state`."""
        entry: PoolEntry | None = None

        async def launched(sandbox: Sandbox) -> None:
            nonlocal entry
            entry = PoolEntry(sandbox, request.tenant_id, request.session_id, profile=profile, agent=agent)
            self._entries[sandbox.id] = entry
            slot.release()  # the entry counts now
            now = utcnow()
            row = SandboxRow(
                id=sandbox.id,
                tenant_id=request.tenant_id,
                session_id=uuid.UUID(request.session_id),
                state=SandboxState.WARMING,
                pid=sandbox.pid,
                created_at=now,
                last_used_at=now,
                server_id=self.server_id,
            )
            # Synchronously: from now on a crash of this server must find this process in the table.
            await self._store.save_sandbox(row)

        try:
            sandbox = await self._manager.start(request, on_launched=launched)
        except BaseException as exc:
            if isinstance(exc, SandboxError) and self.metrics is not None:
                self.metrics.sandbox_failures.labels("start").inc()
            slot.release()
            if entry is not None:
                self._entries.pop(entry.id, None)
                self._write(entry.id, None)
            raise
        assert entry is not None
        if self.metrics is not None:
            self.metrics.sandbox_starts.inc()
        if state != SandboxState.WARM:
            self._drop_cold_rows(request.session_id)
        # In order after the rows written so far, and written before the entry can be claimed (a claim writes its
        # row directly, in the claiming session's insert).
        self._write(entry.id, {"state": state, "last_used_at": utcnow()})
        await self.flush()
        entry.state = entry.recorded = state
        entry.last_used = time.monotonic()
        return sandbox

    # -- Claims and states --------------------------------------------------------------------------------------

    def has_warm(self, tenant_id: str, agent_name: str) -> bool:
        return any(e.state == SandboxState.WARM and e.agent == (tenant_id, agent_name) for e in self._entries.values())

    def claim(self, profile: str) -> PoolEntry | None:
        """Take a warm sandbox started for exactly this profile (the oldest), or None. No await: two claims can
        never get the same one."""
        candidates = [e for e in self._entries.values() if e.state == SandboxState.WARM and e.profile == profile]
        candidates = [e for e in candidates if e.sandbox.alive]
        if not candidates:
            return None
        entry = min(candidates, key=lambda e: e.created)
        entry.state = entry.recorded = SandboxState.WAITING  # the claiming session's insert writes the row
        entry.profile = None
        entry.claiming = True
        entry.last_used = time.monotonic()
        self.pre_warm_hits += 1
        return entry

    def claimed(self, entry: PoolEntry) -> None:
        """The claiming session exists (its insert marked the row `waiting`): the sandbox's model socket serves it
        from now on. Call `refill` once the request's own writes are done."""
        self._manager.gateway.assign(entry.id, entry.session_id)
        entry.claiming = False

    def refill(self) -> None:
        """Start replacements for claimed warm sandboxes (after the claiming request's database writes, which
        would otherwise contend with the new sandbox's row on SQLite)."""
        self._wake.set()

    def mark(self, sandbox_id: str, state: SandboxState) -> None:
        """`running` when a turn starts, `waiting` when it ends. Memory only: the row follows in the background."""
        entry = self._entries.get(sandbox_id)
        if entry is None or entry.state == state:
            return
        entry.state = state
        entry.last_used = time.monotonic()

    def sync_states(self) -> None:
        """Bring the rows of sessions' sandboxes in line with their `waiting`/`running` state and last use."""
        for entry in self._entries.values():
            if (
                entry.state in (SandboxState.WAITING, SandboxState.RUNNING)
                and entry.recorded != entry.state
                and not entry.claiming
            ):
                entry.recorded = entry.state
                self._write(entry.id, {"state": entry.state, "last_used_at": utcnow()})

    def touch(self, sandbox_id: str) -> None:
        entry = self._entries.get(sandbox_id)
        if entry is not None:
            entry.last_used = time.monotonic()

    # -- Stopping -----------------------------------------------------------------------------------------------

    async def release(self, sandbox: Sandbox, *, cold: bool) -> None:
        """Stop a session's sandbox. `cold`: its session lives on (files persisted) and the row says so."""
        self._entries.pop(sandbox.id, None)
        await self._manager.stop(sandbox)
        if cold:
            self._write(sandbox.id, {"state": SandboxState.COLD, "pid": None, "last_used_at": utcnow()})
        else:
            self._write(sandbox.id, None)

    async def retire(self, entry: PoolEntry) -> None:
        """Stop an unclaimed warm sandbox and remove the folder reserved for its session."""
        self._entries.pop(entry.id, None)
        await self._manager.stop(entry.sandbox)
        self._write(entry.id, None)
        shutil.rmtree(self._data.session(entry.tenant_id, entry.session_id), ignore_errors=True)

    async def _exited(self, sandbox: Sandbox) -> None:
        """A sandbox died on its own (the manager has cleaned it up)."""
        entry = self._entries.pop(sandbox.id, None)
        if entry is None:
            return
        # One still starting is counted by `start`, as a failure to start.
        if entry.state != SandboxState.WARMING and self.metrics is not None:
            self.metrics.sandbox_failures.labels(sandbox.exit_cause or "crash").inc()
        if entry.state in UNCLAIMED:
            self._write(sandbox.id, None)
            shutil.rmtree(self._data.session(entry.tenant_id, entry.session_id), ignore_errors=True)
        else:
            self._write(sandbox.id, {"state": SandboxState.COLD, "pid": None, "last_used_at": utcnow()})

    # -- Idle sweep ---------------------------------------------------------------------------------------------

    async def sweep_idle(self, idle_timeout_s: float) -> int:
        """Evict (persist, stop) the sandboxes of sessions idle longer than the timeout. Warm ones stay: being
        ready is their job."""
        now = time.monotonic()
        reclaimed = 0
        idle = [
            e
            for e in self._entries.values()
            if e.state == SandboxState.WAITING and not e.claiming and now - e.last_used >= idle_timeout_s
        ]
        for entry in idle:
            if self.evictor is not None and await self.evictor(entry, "idle"):
                reclaimed += 1
        return reclaimed

    # -- Warm pool ----------------------------------------------------------------------------------------------

    def agents_changed(self) -> None:
        """An agent was deployed, changed or deleted: bring the warm pool in line now."""
        self._warm_failed.clear()
        self._wake.set()

    async def maintain(self) -> None:
        """Keep the warm pool filled and current, until cancelled."""
        while not self._closing:
            try:
                await self._replenish()
                self.sync_states()
            except Exception:
                log.exception("warm pool maintenance failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=MAINTAIN_INTERVAL_S)
            self._wake.clear()

    def _warm_size(self, agent: Agent) -> int:
        size = agent.config.get("warmPoolSize")
        return size if isinstance(size, int) and size >= 0 else self.warm_pool_size

    async def _replenish(self) -> None:
        if self.profile_of is None or self.prepare_warm is None:
            return
        wanted: dict[str, tuple[Agent, int]] = {}
        sized = self.warm_pool_size > 0
        for agent in await self._store.all_agents():
            size = self._warm_size(agent)
            sized = sized or size > 0
            if size > 0:
                wanted[self.profile_of(agent, {})] = (agent, size)
        # Warm sandboxes of an old version or config, or more than wanted, go.
        for entry in [e for e in self._entries.values() if e.state == SandboxState.WARM]:
            want = wanted.get(entry.profile or "")
            have = sum(1 for e in self._entries.values() if e.state in UNCLAIMED and e.profile == entry.profile)
            if want is None or have > want[1]:
                await self.retire(entry)
        if not sized:
            return
        now = time.monotonic()
        for profile, (agent, size) in wanted.items():
            if now - self._warm_failed.get(profile, -WARM_RETRY_S) < WARM_RETRY_S:
                continue
            have = sum(1 for e in self._entries.values() if e.state in UNCLAIMED and e.profile == profile)
            while have < size and not self._closing and self._occupied() < self.max_sandboxes:
                if not await self._start_warm(agent, profile):
                    self._warm_failed[profile] = time.monotonic()
                    break
                have += 1

    async def _start_warm(self, agent: Agent, profile: str) -> bool:
        assert self.prepare_warm is not None
        try:
            slot = await self.reserve(evict=False)
        except CapacityExhausted:
            return False
        prepared = None
        started = False
        try:
            prepared = await self.prepare_warm(agent)
            if prepared is not None:
                await self.start(
                    prepared[1], slot, state=SandboxState.WARM, profile=profile, agent=(agent.tenant_id, agent.name)
                )
                started = True
        except (AshError, OSError) as exc:
            message = exc.message if isinstance(exc, AshError) else str(exc)
            log.warning("warm sandbox for agent %s/%s failed to start: %s", agent.tenant_id, agent.name, message)
        finally:
            slot.release()
            if prepared is not None and not started:  # failed, or cancelled at shutdown: its folder goes too
                shutil.rmtree(self._data.session(agent.tenant_id, prepared[0]), ignore_errors=True)
        return started

    # -- Start-up and shutdown ----------------------------------------------------------------------------------

    async def recover(self) -> int:
        """After a restart: kill what this server's predecessor left running; its sessions' rows become cold,
        unclaimed warm sandboxes (and their reserved folders) go. Returns how many processes were still alive."""
        rows = await self._store.list_sandboxes(self.server_id)
        killed = await self._manager.reap_orphans([(r.id, r.pid) for r in rows if r.state != SandboxState.COLD])
        states = await self._store.session_states([r.session_id for r in rows if r.session_id is not None])
        for row in rows:
            session = states.get(row.session_id) if row.session_id is not None else None
            if session is not None and session[0] != SessionStatus.ENDED:
                if row.state != SandboxState.COLD or row.server_id is None:
                    await self._store.update_sandbox(
                        row.id, state=SandboxState.COLD, pid=None, server_id=self.server_id
                    )
                continue
            await self._store.delete_sandbox(row.id)
            if session is None and row.state in UNCLAIMED and row.session_id is not None:
                shutil.rmtree(self._data.session(row.tenant_id, str(row.session_id)), ignore_errors=True)
        self._cold = await self._store.count_sandboxes(self.server_id, SandboxState.COLD)
        return killed

    async def close(self) -> None:
        """Stop the warm pool (its sandboxes and reserved folders go) and write what is pending. Sessions'
        sandboxes are the session service's to persist and release first."""
        self._closing = True
        self._wake.set()
        for entry in [e for e in self._entries.values() if e.state in UNCLAIMED]:
            with contextlib.suppress(Exception):
                await self.retire(entry)
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()

    # -- The table ----------------------------------------------------------------------------------------------

    def _write(self, sandbox_id: str, values: dict[str, Any] | None) -> None:
        """Update (or, with None, delete) a row, in order, off the caller's path."""
        self._writes.put_nowait(("update" if values is not None else "delete", sandbox_id, values or {}))
        self._ensure_writer()

    def _drop_cold_rows(self, session_id: str) -> None:
        """The session has a sandbox again: the cold rows that stood for it (on any server) go."""
        self._writes.put_nowait(("drop_cold", session_id, {}))
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_rows())

    async def _write_rows(self) -> None:
        while True:
            op, key, values = await self._writes.get()
            try:
                if op == "delete":
                    await self._store.delete_sandbox(key)
                elif op == "drop_cold":
                    await self._store.delete_cold_sandboxes(uuid.UUID(key))
                else:
                    await self._store.update_sandbox(key, **values)
                if op != "update" or values.get("state") == SandboxState.COLD:
                    self._cold = await self._store.count_sandboxes(self.server_id, SandboxState.COLD)
            except Exception:
                log.exception("writing the pool row of %s failed", key)
            finally:
                self._writes.task_done()

    async def flush(self) -> None:
        """Wait until every row change so far is in the database."""
        self._ensure_writer()
        await self._writes.join()
