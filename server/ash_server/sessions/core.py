"""What every part of the session service shares: its dependencies, the live entries, and the steps the lifecycle,
turns and upkeep all take (read a session under its lock, give it a sandbox, persist it, change its row).

A session's files live in `sessions/<tenant>/<id>/` (workspace and the SDK's config dir with its transcripts), so a
sandbox is disposable: a new one started on the same folder with `resume=<sdk session id>` continues the same
conversation (the cold path). Snapshots copy that folder to a store other servers share, so the cold path also
works on a server that never saw the session: the server that last ran a session is its `runnerId`, and another
server restores the latest snapshot before it starts a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Unpack

from opentelemetry import trace
from opentelemetry.trace import Tracer

from ..agents import AgentService
from ..errors import AshError, Conflict, Gone, NotFound, SessionMoved, SnapshotError, StartsBusy
from ..observability.metrics import Metrics
from ..observability.tracing import traced
from ..paths import DataDir
from ..sandbox.admission import Admission
from ..sandbox.dependencies import Bundle
from ..sandbox.manager import SandboxManager, SandboxRequest
from ..sandbox.pool import PoolEntry, SandboxPool, Slot
from ..sandbox.sandbox import Sandbox
from ..snapshots.service import SnapshotService
from ..states import SessionStatus, check_transition
from ..store.models import Agent, SessionRow, utcnow
from ..store.repository import Store
from ..store.sessions import SessionChanges
from ..store.timeline import TurnMessage
from .background import record_background
from .events import dumps
from .live import LiveSession, LiveSessions
from .options import TurnOptions, effective_sdk_options
from .turn_usage import TurnUsage

log = logging.getLogger(__name__)


class SessionCore:
    def __init__(
        self,
        store: Store,
        data: DataDir,
        agents: AgentService,
        sandboxes: SandboxManager,
        *,
        pool: SandboxPool,
        snapshots: SnapshotService,
        metrics: Metrics,
        tracer: Tracer | None = None,
        exclusive: bool = False,
        usage: TurnUsage | None = None,
    ) -> None:
        """`exclusive` (runner mode): serve only the sessions assigned to this server (`runnerId`); coordinators
        move sessions between runners, a runner never takes one over by itself."""
        self.store = store
        self.data = data
        self.agents = agents
        self.sandboxes = sandboxes
        self.pool = pool
        self.snapshots = snapshots
        self.metrics = metrics
        self.tracer: Tracer = tracer or trace.NoOpTracer()
        self.exclusive = exclusive
        # The gateway's usage book (the same object): a running turn's model usage is written with the turn.
        self.usage = usage or TurnUsage(store)
        self.server_id = pool.server_id
        self.live = LiveSessions()
        # Tasks that outlive the request that started them (interrupt watchdogs, the sandboxes' listeners): kept so
        # they are not collected.
        self.background: set[asyncio.Task[None]] = set()

    def runs_here(self, session: SessionRow) -> bool:
        """This server runs the session (or none does yet)."""
        return session.runner_id in (None, self.server_id)

    @contextlib.asynccontextmanager
    async def locked(
        self, tenant_id: str, session_id: uuid.UUID, *, allow_ended: bool = False
    ) -> AsyncIterator[tuple[SessionRow, LiveSession]]:
        """The session, read again once its lock is held (it may have changed while this request waited), and its
        live entry. An ended session is 410 unless `allow_ended`."""
        known = self.live.get(session_id)
        if known is None or known.tenant_id != tenant_id:
            await self.get(tenant_id, session_id)  # 404 (or moved) before an entry is made for it
        async with self.live.locked(session_id, tenant_id) as live:
            session = await self.get(tenant_id, session_id)
            live.row = session
            if session.status == SessionStatus.ENDED and not allow_ended:
                raise Gone(f"Session is ended: {session_id}")
            yield session, live

    @contextlib.asynccontextmanager
    async def locked_for_message(
        self, tenant_id: str, session_id: uuid.UUID, *, from_memory: bool
    ) -> AsyncIterator[tuple[SessionRow, LiveSession, bool]]:
        """`locked(allow_ended=True)` for a message: with `from_memory`, the row kept in memory (no read) when the
        session is active and its sandbox alive here, else read. The flag says it came from memory: its first
        write must check it (`check_row`), as the store may have changed since (another server, a lifecycle
        change)."""
        known = self.live.get(session_id)
        if not from_memory or known is None or known.tenant_id != tenant_id or not _usable(known):
            async with self.locked(tenant_id, session_id, allow_ended=True) as (session, live):
                yield session, live, False
            return
        async with self.live.locked(session_id, tenant_id) as live:
            if live.row is None or not _usable(live):
                live.row = await self.get(tenant_id, session_id)
                yield live.row, live, False
            else:
                yield live.row, live, True

    async def get(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow:
        session = await self.store.get_session(tenant_id, session_id)
        if session is None:
            raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
        if self.exclusive and not self.runs_here(session):
            raise SessionMoved(
                f"session {session_id} is run by runner {session.runner_id}, not this one",
                runner_id=session.runner_id,
            )
        return session

    async def copy_agent(self, agent: Agent, workspace: Path) -> None:
        folder = await self.agents.materialize(agent)
        await asyncio.to_thread(shutil.copytree, folder, workspace, symlinks=True)

    def request(
        self,
        agent: Agent,
        session_id: str,
        config: dict[str, Any],
        *,
        resume: str | None,
        assigned: bool = True,
        dependencies: Bundle | None = None,
    ) -> SandboxRequest:
        """What a sandbox of this session looks like: the warm pool's profile key covers every input here."""
        workspace = self.data.workspace(agent.tenant_id, session_id)
        bridge_config: dict[str, Any] = {"cwd": str(workspace), **effective_sdk_options(config, TurnOptions())}
        if resume:
            bridge_config["resume"] = resume
        credential = config.get("credentialId")
        return SandboxRequest(
            session_id=session_id,
            tenant_id=agent.tenant_id,
            agent_dir=self.agents.folder(agent),
            workspace=workspace,
            home=self.data.home(agent.tenant_id, session_id),
            bridge_config=bridge_config,
            user_env={**agent.env, **config.get("extraEnv", {})},
            agent_name=agent.name,
            agent_config=dict(agent.config),
            credential_id=str(credential) if credential else None,
            assigned=assigned,
            dependencies=dependencies,
        )

    @traced("sandbox.start")
    async def start_sandbox(
        self, session: SessionRow, live: LiveSession, slot: Slot | None = None, admission: Admission | None = None
    ) -> None:
        """Start a sandbox on the session's folder (cold path); the caller holds the session's lock. The files
        come from the latest snapshot when this server's copy is missing or another server ran the session since.
        """
        agent = await self.store.get_agent(session.tenant_id, session.agent_name)
        if agent is None:
            raise NotFound(f"Agent not found: {session.agent_name!r}, the agent of this session, no longer exists")
        await self.ensure_files(session)  # SnapshotError leaves the session as it was
        await self.agents.materialize(agent)  # the sandbox mounts the agent's folder
        dependencies = await self.agents.bundle(agent)
        if session.runner_id != self.server_id:
            await self.set(session, runner_id=self.server_id)
        request = self.request(
            agent, str(session.id), session.config, resume=session.sdk_session_id, dependencies=dependencies
        )
        own_slot = slot is None
        if slot is None:
            slot = await self.pool.reserve(self.evict)
        try:
            sandbox = await self.pool.start(request, slot, admission=admission)
        except StartsBusy:
            raise  # it never started: the session stays as it was, to be retried
        except AshError:
            await self.set(session, status=SessionStatus.ERROR, sandbox_id="")
            raise
        finally:
            if own_slot:
                slot.release()
        live.sandbox = sandbox
        self.listen(session, sandbox)
        await self.set(session, status=SessionStatus.ACTIVE, sandbox_id=sandbox.id, last_active_at=utcnow())

    def listen(self, session: SessionRow, sandbox: Sandbox) -> None:
        """Store the turns the CLI runs on its own in the session's new sandbox, for as long as it lives. Called
        before the session's first query there: the task that sends `listen` runs before the turn's task."""
        task = asyncio.create_task(record_background(self.store, session, sandbox))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def ensure_files(self, session: SessionRow) -> None:
        """Make this server's copy of the session's folder current: it is, if this server ran the session last;
        otherwise (or if there is none) the latest snapshot replaces it."""
        sid = str(session.id)
        local = self.data.workspace(session.tenant_id, sid).is_dir()
        if local and self.runs_here(session) and await self.snapshots.is_current(session):
            return
        restored = await self.snapshots.restore(session)
        if restored is not None:
            return
        if not local:
            elsewhere = f"; it last ran on server {session.runner_id}" if session.runner_id else ""
            raise SnapshotError(
                f"session {sid} has no files on this server and no snapshot to restore them from{elsewhere}",
                session_id=sid,
            )
        log.warning("session %s last ran on %s and has no snapshot; using this server's copy", sid, session.runner_id)

    async def drop_if_stale(self, session: SessionRow, live: LiveSession) -> None:
        """Another server has run this session since this one started its sandbox: that sandbox (and the files
        it has) are out of date. It goes, without a snapshot; the cold path restores the newer state."""
        if live.sandbox is not None and not self.runs_here(session):
            log.info("session %s moved to server %s; dropping its stale sandbox here", session.id, session.runner_id)
            await self.drop_sandbox(live, cold=False)

    async def persist(self, session: SessionRow) -> None:
        """Snapshot the session now, if snapshots are on and this server runs it (SnapshotError if that fails:
        nothing is freed then)."""
        if self.runs_here(session):
            await self.snapshots.take(session)

    async def refuse_if_elsewhere(self, session: SessionRow) -> None:
        """409 when the server that runs this session (another one) has a sandbox for it: only that server can
        persist or stop it. (Other servers' sandboxes of a session this server runs are stale, not a conflict.)"""
        runner = session.runner_id
        if runner in (None, self.server_id):
            return
        assert runner is not None
        if await self.store.live_sandbox_on(session.id, runner) is not None:
            raise Conflict(
                f"session {session.id} is running on another server ({runner}); send this there", server_id=runner
            )

    def refuse_while_running(self, live: LiveSession) -> None:
        if live.turn is not None and not live.turn.finished:
            raise Conflict(f"a turn is already running on this session ({live.turn.id})", turn_id=live.turn.id)

    async def drop_sandbox(self, live: LiveSession, *, cold: bool) -> None:
        """Stop the session's sandbox. `cold`: the session lives on without one (its files are persisted)."""
        if live.sandbox is not None:
            await self.pool.release(live.sandbox, cold=cold)
            live.sandbox = None

    async def set(
        self,
        session: SessionRow,
        *,
        event: tuple[str, dict[str, Any]] | None = None,
        **values: Unpack[SessionChanges],
    ) -> None:
        """Change the session's row; `event`, a timeline event (kind, data) of the change, in the same
        transaction."""
        if "status" in values:
            check_transition(session.status, values["status"])
        for key, value in values.items():
            setattr(session, key, value)
        if event is None:
            await self.store.update_session(session.id, **values)
        else:
            await self.store.write_turn(session, [TurnMessage.event(event[0], dumps(event[1]))], [], **values)

    async def event(self, session: SessionRow, kind: str, data: dict[str, Any]) -> None:
        await self.store.append_events(session, [(kind, dumps(data))])

    async def evict(self, entry: PoolEntry, reason: str) -> bool:
        """The pool wants this idle session's sandbox back: persist the session, then stop the sandbox. False if
        the session is busy (a request holds it, a turn runs) or its snapshot failed: it keeps its sandbox."""
        sid = uuid.UUID(entry.session_id)
        live = self.live.get(sid)
        if live is None or live.sandbox is not entry.sandbox:
            await self.pool.release(entry.sandbox, cold=True)
            return True
        if live.users or live.lock.locked() or live.running:
            return False
        async with live.lock:  # free: taken at once, nothing ran in between
            session = await self.store.get_session(live.tenant_id, sid)
            if session is None or session.status == SessionStatus.ENDED or not self.runs_here(session):
                await self.drop_sandbox(live, cold=False)  # nothing to keep here
                return True
            try:
                await self.persist(session)
            except AshError as exc:
                log.warning("not evicting session %s: its snapshot failed: %s", sid, exc.message)
                return False
            await self.drop_sandbox(live, cold=True)
            await self.store.update_session(sid, sandbox_id="")
        self.live.forget_if_idle(sid)
        await self.event(session, "lifecycle", {"action": "sandbox_stopped", "reason": reason})
        return True


class SessionPart:
    """What each part of the session service (lifecycle, turns, upkeep) holds of the core."""

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self._store = core.store
        self._data = core.data
        self._agents = core.agents
        self._sandboxes = core.sandboxes
        self._pool = core.pool
        self._snapshots = core.snapshots
        self.tracer: Tracer = core.tracer


def _usable(live: LiveSession) -> bool:
    """The row kept in memory may stand in for a read: it says active and the sandbox is alive here."""
    row = live.row
    return (
        row is not None
        and row.status == SessionStatus.ACTIVE
        and row.tenant_id == live.tenant_id
        and live.sandbox is not None
        and live.sandbox.alive
    )
