"""The coordinator's side: which runners exist, which are alive, where a session runs and where a new one goes.

Everything is in the database (the `runners` table and each session's `runnerId`), so any number of coordinators
behind a load balancer agree; what a coordinator remembers (the runner it last sent a session to) is a shortcut
that the runner's own check keeps honest. Placement counts the sessions just sent to a
runner as load at once (store.place_session), so a burst of creates spreads over the runners instead of landing on
the one the last heartbeat said was emptiest. A runner silent for ASH_RUNNER_LIVENESS_TIMEOUT_MS is declared dead;
the next request for one of its sessions moves the session, by compare-and-set, to a live runner, which restores it
from its latest snapshot. A runner that comes back finds its moved sessions gone from it (runner.py drops them).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx

from ..errors import CapacityExhausted, NotFound
from ..sessions.events import dumps
from ..settings import Settings
from ..states import SessionStatus
from ..store.models import Runner, SessionRow, utcnow
from ..store.repository import Store
from .placement import least_loaded, runner_load
from .proxy import RunnerUnreachable

log = logging.getLogger(__name__)

# Runners a new session is offered to before its create fails (each one that could not be reached at all).
PLACEMENT_ATTEMPTS = 3
T = TypeVar("T")

# A coordinator's memory of where sessions run (the last runner each was routed to, and the runners' rows read at
# most RUNNERS_FRESH_S ago): only a shortcut past the database on the hot path. The runner still checks that the
# session is its own (a 409 with x-ash-session-moved sends the request down the database path), and a runner whose
# remembered heartbeat is too old is not used.
ROUTES_KEPT = 10_000
RUNNERS_FRESH_S = 1.0

# Statuses of the sessions a dead runner held a sandbox for.
HELD = (SessionStatus.STARTING, SessionStatus.ACTIVE)
MOVE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RunnerView:
    """A runner as operators see it (GET /api/internal/runners, /health, /metrics)."""

    id: str
    url: str
    status: str  # live | draining | dead
    max_sandboxes: int
    load: int
    stats: dict[str, Any]
    version: str
    registered_at: datetime
    last_heartbeat_at: datetime


class Registry:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._timeout = timedelta(milliseconds=settings.runner_liveness_timeout_ms)
        self._sweep_s = min(settings.heartbeat_interval_ms, settings.runner_liveness_timeout_ms) / 1000 / 2
        self._seen: list[RunnerView] = []
        self._routes: OrderedDict[tuple[str, uuid.UUID], str] = OrderedDict()
        self._runner_rows: dict[str, Runner] = {}
        self._runners_read = -RUNNERS_FRESH_S

    def cached_runners(self) -> list[RunnerView]:
        """The runners as of the last sweep or listing: for /metrics, whose collectors cannot query the database.
        Never used for routing."""
        return list(self._seen)

    def _heard_since(self) -> datetime:
        return utcnow() - self._timeout

    # -- Runner endpoints ---------------------------------------------------------------------------------------

    async def register(self, runner_id: str, url: str, max_sandboxes: int, version: str) -> None:
        now = utcnow()
        await self._store.register_runner(
            Runner(
                id=runner_id,
                url=url,
                status="live",
                max_sandboxes=max_sandboxes,
                sandboxes=0,
                placed=0,
                received=0,
                stats={},
                version=version,
                draining=False,
                registered_at=now,
                last_heartbeat_at=now,
            )
        )
        log.info("runner %s registered at %s (%d sandboxes)", runner_id, url, max_sandboxes)

    async def heartbeat(self, runner_id: str, *, sandboxes: int, received: int, stats: dict[str, Any]) -> None:
        if not await self._store.runner_heartbeat(
            runner_id, sandboxes=sandboxes, received=received, stats=stats, now=utcnow()
        ):
            raise NotFound(f"runner {runner_id} is not registered (or was declared dead); register again")

    async def drain(self, runner_id: str) -> None:
        if not await self._store.set_runner_draining(runner_id):
            raise NotFound(f"runner {runner_id} is not registered")
        log.info("runner %s is draining: no new sessions go there", runner_id)

    async def deregister(self, runner_id: str) -> None:
        await self._store.delete_runner(runner_id)
        log.info("runner %s deregistered", runner_id)

    # -- Views --------------------------------------------------------------------------------------------------

    def _status(self, runner: Runner, heard_since: datetime) -> str:
        if runner.status != "live" or runner.last_heartbeat_at < heard_since:
            return "dead"
        return "draining" if runner.draining else "live"

    async def runners(self) -> list[RunnerView]:
        heard_since = self._heard_since()
        self._seen = [
            RunnerView(
                id=r.id,
                url=r.url,
                status=self._status(r, heard_since),
                max_sandboxes=r.max_sandboxes,
                load=runner_load(r),
                stats=dict(r.stats),
                version=r.version,
                registered_at=r.registered_at,
                last_heartbeat_at=r.last_heartbeat_at,
            )
            for r in await self._store.list_runners()
        ]
        return list(self._seen)

    # -- Routing ------------------------------------------------------------------------------------------------

    async def place(self, exclude: list[str] | None = None) -> Runner:
        """The runner a new session goes to (its placement already counted); 503 when none is alive with room."""
        runner = await self._store.place_session(self._heard_since(), least_loaded, exclude or [])
        if runner is None:
            raise CapacityExhausted("no live runner has room for a session; try again later")
        return runner

    async def send_placed(self, send: Callable[[Runner], Awaitable[T]]) -> T:
        """Send a new session's request to the runner `place` chooses; to another one when nothing reached that
        one (RunnerUnreachable), up to PLACEMENT_ATTEMPTS runners."""
        tried: list[str] = []
        for attempt in range(PLACEMENT_ATTEMPTS):
            runner = await self.place(tried)
            try:
                return await send(runner)
            except RunnerUnreachable as exc:
                await self.unplace(runner)  # nothing reached it: the session can go elsewhere
                tried.append(runner.id)
                log.warning("placing a session: %s; trying another runner", exc.message)
                if attempt == PLACEMENT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def remembered_runner(self, tenant_id: str, session_id: uuid.UUID) -> Runner | None:
        """The live runner this session was last routed to, if this coordinator remembers one."""
        key = (tenant_id, session_id)
        runner_id = self._routes.get(key)
        if runner_id is None:
            return None
        if time.monotonic() - self._runners_read > RUNNERS_FRESH_S:
            self._runner_rows = {r.id: r for r in await self._store.list_runners()}
            self._runners_read = time.monotonic()
        runner = self._runner_rows.get(runner_id)
        if runner is None or self._status(runner, self._heard_since()) == "dead":
            self.forget_route(tenant_id, session_id)
            return None
        self._routes.move_to_end(key)
        return runner

    def remember_route(self, tenant_id: str, session_id: uuid.UUID, runner_id: str) -> None:
        self._routes[(tenant_id, session_id)] = runner_id
        self._routes.move_to_end((tenant_id, session_id))
        while len(self._routes) > ROUTES_KEPT:
            self._routes.popitem(last=False)

    def forget_route(self, tenant_id: str, session_id: uuid.UUID) -> None:
        self._routes.pop((tenant_id, session_id), None)

    async def send_routed(
        self, session: SessionRow, runner: Runner | None, send: Callable[[Runner], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """Send a request about an existing session to the runner that serves it (`route`; `runner`: its row, if
        already read); once more if that runner says the session moved meanwhile (a move raced the request).
        RunnerUnreachable (503, Retry-After) when the runner is down but not yet declared dead: by the time the
        client retries, the liveness sweep has moved its sessions."""
        avoid: str | None = None
        while True:
            chosen = await self.route(session, avoid=avoid, runner=runner)
            upstream = await send(chosen)
            if upstream.status_code != 409 or "x-ash-session-moved" not in upstream.headers or avoid is not None:
                if upstream.status_code != 409:
                    self.remember_route(session.tenant_id, session.id, chosen.id)
                return upstream
            await upstream.aclose()
            fresh = await self._store.get_session(session.tenant_id, session.id)
            if fresh is None:
                raise NotFound(f"Session not found: {session.id}", session_id=str(session.id))
            session, runner, avoid = fresh, None, chosen.id

    async def unplace(self, runner: Runner) -> None:
        await self._store.unplace(runner.id)

    async def route(self, session: SessionRow, *, avoid: str | None = None, runner: Runner | None = None) -> Runner:
        """The runner that serves this session: its own while that is alive, else a live one it moves to (`avoid`:
        a runner that just said the session is not its; `runner`: the session's runner row, if already read)."""
        for _ in range(MOVE_ATTEMPTS):
            current = session.runner_id
            if current is not None and current != avoid:
                if runner is None or runner.id != current:
                    runner = await self._store.get_runner(current)
                if runner is not None and self._status(runner, self._heard_since()) != "dead":
                    return runner
            target = await self.place([avoid] if avoid else None)
            if await self._store.move_session(session.id, current, target.id):
                await self._store.append_events(
                    session, [("lifecycle", dumps({"action": "moved", "from": current, "to": target.id}))]
                )
                log.info("session %s moves from runner %s to %s", session.id, current, target.id)
                session.runner_id = target.id
                return target
            await self.unplace(target)
            fresh = await self._store.get_session(session.tenant_id, session.id)
            if fresh is None:
                raise NotFound(f"Session not found: {session.id}")
            session = fresh
            avoid = None
        raise CapacityExhausted(f"session {session.id} is being moved between runners; try again")

    # -- Liveness -----------------------------------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Declare silent runners dead and mark their sessions: no sandbox anywhere until they are routed again."""
        dead = await self._store.mark_dead_runners(self._heard_since())
        for runner_id in dead:
            sessions = await self._store.sessions_on_runner(runner_id, HELD)
            log.warning("runner %s missed its heartbeats: dead; %d session(s) will move", runner_id, len(sessions))
            for session in sessions:
                await self._store.update_session(session.id, sandbox_id="")
                await self._store.append_events(
                    session, [("lifecycle", dumps({"action": "runner_lost", "runnerId": runner_id}))]
                )
        return dead

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            try:
                await self.sweep()
                await self.runners()
            except Exception:  # the database may be away for a moment; the next sweep tries again
                log.exception("runner liveness sweep failed")
