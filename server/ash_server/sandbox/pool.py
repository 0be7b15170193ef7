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

The warm pool (warm.py) keeps sandboxes started ahead for sessions that do not exist yet, in this pool, woken by
`changed`; the rows are written by pool_rows.py, in order and off the callers' paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..errors import CapacityExhausted, SandboxError
from ..observability.metrics import Metrics
from ..paths import DataDir, remove_tree
from ..states import UNCLAIMED, SandboxState, SessionStatus
from ..store.models import SandboxRow, utcnow
from ..store.repository import Store
from .admission import Admission, StartAdmission, StartPriority
from .manager import SandboxManager, SandboxRequest
from .pool_rows import PoolRowWriter
from .sandbox import Sandbox

log = logging.getLogger(__name__)
# How long after a warm claim its replacement starts (pool.refill).
REFILL_DELAY_S = 0.05


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
            self._pool.reserved -= 1


# Persist a session's sandbox and stop it; False if it could not be evicted now (busy).
Evictor = Callable[[PoolEntry, str], Awaitable[bool]]


class SandboxPool:
    def __init__(
        self,
        store: Store,
        manager: SandboxManager,
        data: DataDir,
        *,
        server_id: str,
        max_sandboxes: int,
        admission: StartAdmission,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self._manager = manager
        self.data = data
        self.server_id = server_id
        self.max_sandboxes = max_sandboxes
        self.admission = admission
        self._entries: dict[str, PoolEntry] = {}
        self.reserved = 0
        self._rows = PoolRowWriter(store, server_id)
        # Set when room may have come free or the pool closes: the warm pool (warm.py) waits on it.
        self.changed = asyncio.Event()
        self.pre_warm_hits = 0
        self.resume_warm_hits = 0
        self.resume_cold_hits = 0
        self.evictions = 0
        self.metrics = metrics or Metrics()
        self.closing = False

    # -- Queries ------------------------------------------------------------------------------------------------

    def entry(self, sandbox_id: str) -> PoolEntry | None:
        return self._entries.get(sandbox_id)

    def entries(self) -> list[PoolEntry]:
        return list(self._entries.values())

    @property
    def occupied(self) -> int:
        """Sandboxes that exist or are being started (warm ones included)."""
        return len(self._entries) + self.reserved

    def counts(self) -> dict[str, int]:
        """Sandboxes by state (cold: this server's sessions whose sandbox is gone, files persisted)."""
        counts: dict[str, int] = dict.fromkeys(SandboxState, 0)
        for entry in self._entries.values():
            counts[entry.state] += 1
        counts[SandboxState.COLD] = self._rows.cold
        return counts

    async def stats(self) -> dict[str, int]:
        """What /health reports (and /metrics could): counts by state, capacity and hit counters."""
        await self._rows.recount()
        counts = self.counts()
        return {
            **counts,
            "total": sum(n for state, n in counts.items() if state != SandboxState.COLD),
            "maxCapacity": self.max_sandboxes,
            "resumeWarmHits": self.resume_warm_hits,
            "resumeColdHits": self.resume_cold_hits,
            "preWarmHits": self.pre_warm_hits,
            "evictions": self.evictions,
            **self.admission.stats(),
        }

    # -- Capacity -----------------------------------------------------------------------------------------------

    async def reserve(self, evictor: Evictor | None) -> Slot:
        """Room for one more sandbox: retire warm sandboxes, then have `evictor` (the session service's: it
        persists the session first) evict the least recently used idle one, if needed; None takes no sandbox.
        CapacityExhausted (503) when everything left is running a turn or starting."""
        tried: set[str] = set()
        while self.occupied >= self.max_sandboxes:
            victim = self._victim(tried) if evictor is not None else None
            if victim is None:
                running = sum(1 for e in self._entries.values() if e.state == SandboxState.RUNNING)
                if running == len(self._entries) and not self.reserved:
                    message = f"all {self.max_sandboxes} sandboxes are running turns; try again when one finishes"
                else:
                    message = f"all {self.max_sandboxes} sandboxes are busy (running turns or starting); try again"
                raise CapacityExhausted(message, max_sandboxes=self.max_sandboxes, running=running)
            tried.add(victim.id)
            if victim.state == SandboxState.WARM:
                await self.retire(victim)
            elif evictor is not None and await evictor(victim, "capacity"):
                self.evictions += 1
                log.info("evicted sandbox %s of session %s (pool full)", victim.id, victim.session_id)
        self.reserved += 1
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
        admission: Admission | None = None,
    ) -> Sandbox:
        """Start a sandbox in the room `slot` holds; it enters the pool as `warming`, then `state`. It waits for
        its turn to start (admission.py) unless the caller was already admitted (`admission`, released here)."""
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
            await self.store.save_sandbox(row)

        try:
            if admission is None:
                priority = StartPriority.WARM if state == SandboxState.WARM else StartPriority.SESSION
                admission = await self.admission.admit(priority)
            try:
                sandbox = await self._manager.start(request, on_launched=launched, on_exited=self._exited)
            finally:
                admission.release()
        except BaseException as exc:
            if isinstance(exc, SandboxError):
                self.metrics.sandbox_failures.labels("start").inc()
            slot.release()
            if entry is not None:
                self._entries.pop(entry.id, None)
                self._rows.write(entry.id, None)
            raise
        assert entry is not None
        self.metrics.sandbox_starts.inc()
        if state != SandboxState.WARM:
            self._rows.drop_cold_rows(request.session_id)
        # In order after the rows written so far, and written before the entry can be claimed (a claim writes its
        # row directly, in the claiming session's insert).
        self._rows.write(entry.id, {"state": state, "last_used_at": utcnow()})
        await self._rows.flush()
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
        if entry.sandbox.guard is not None:
            try:
                entry.sandbox.guard.confinement.prioritise(background=False)  # a session's now: a full share
            except OSError as exc:
                log.warning("sandbox %s keeps its background CPU share: %s", entry.id, exc)

    def refill(self) -> None:
        """Start replacements for claimed warm sandboxes, a moment after the claiming request: after its
        database writes (which would contend with the new sandbox's row on SQLite) and its answer, which the
        replacement's start would otherwise hold up."""
        asyncio.get_running_loop().call_later(REFILL_DELAY_S, self.changed.set)

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
                self._rows.write(entry.id, {"state": entry.state, "last_used_at": utcnow()})

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
            self._rows.write(sandbox.id, {"state": SandboxState.COLD, "pid": None, "last_used_at": utcnow()})
        else:
            self._rows.write(sandbox.id, None)

    async def retire(self, entry: PoolEntry) -> None:
        """Stop an unclaimed warm sandbox and remove the folder reserved for its session."""
        self._entries.pop(entry.id, None)
        await self._manager.stop(entry.sandbox)
        self._rows.write(entry.id, None)
        await remove_tree(self.data.session(entry.tenant_id, entry.session_id))

    async def _exited(self, sandbox: Sandbox) -> None:
        """A sandbox died on its own (the manager has cleaned it up)."""
        entry = self._entries.pop(sandbox.id, None)
        if entry is None:
            return
        # One still starting is counted by `start`, as a failure to start.
        if entry.state != SandboxState.WARMING:
            self.metrics.sandbox_failures.labels(sandbox.exit_cause or "crash").inc()
        if entry.state in UNCLAIMED:
            self._rows.write(sandbox.id, None)
            await remove_tree(self.data.session(entry.tenant_id, entry.session_id))
        else:
            self._rows.write(sandbox.id, {"state": SandboxState.COLD, "pid": None, "last_used_at": utcnow()})

    # -- Idle sweep ---------------------------------------------------------------------------------------------

    async def sweep_idle(self, hot_window_s: float, evictor: Evictor) -> int:
        """Evict (persist, stop) the sandboxes of sessions idle longer than the timeout. Warm ones stay: being
        ready is their job."""
        now = time.monotonic()
        reclaimed = 0
        idle = [
            e
            for e in self._entries.values()
            if e.state == SandboxState.WAITING and not e.claiming and now - e.last_used >= hot_window_s
        ]
        for entry in idle:
            if await evictor(entry, "idle"):
                reclaimed += 1
        return reclaimed

    # -- Start-up and shutdown ----------------------------------------------------------------------------------

    async def recover(self) -> int:
        """After a restart: kill what this server's predecessor left running; its sessions' rows become cold,
        unclaimed warm sandboxes (and their reserved folders) go. Returns how many processes were still alive."""
        rows = await self.store.list_sandboxes(self.server_id)
        killed = await self._manager.reap_orphans([(r.id, r.pid) for r in rows if r.state != SandboxState.COLD])
        states = await self.store.session_states([r.session_id for r in rows if r.session_id is not None])
        for row in rows:
            session = states.get(row.session_id) if row.session_id is not None else None
            if session is not None and session[0] != SessionStatus.ENDED:
                if row.state != SandboxState.COLD or row.server_id is None:
                    await self.store.update_sandbox(row.id, state=SandboxState.COLD, pid=None, server_id=self.server_id)
                continue
            await self.store.delete_sandbox(row.id)
            if session is None and row.state in UNCLAIMED and row.session_id is not None:
                await remove_tree(self.data.session(row.tenant_id, str(row.session_id)))
        await self._rows.recount()
        return killed

    async def close(self) -> None:
        """Stop the warm pool (its sandboxes and reserved folders go) and write what is pending. Sessions'
        sandboxes are the session service's to persist and release first."""
        self.closing = True
        self.changed.set()
        for entry in [e for e in self._entries.values() if e.state in UNCLAIMED]:
            with contextlib.suppress(Exception):
                await self.retire(entry)
        await self._rows.flush()
        self._rows.close()

    async def flush(self) -> None:
        """Wait until every row change so far is in the database."""
        await self._rows.flush()
