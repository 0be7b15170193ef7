"""A session's life: create (cold, or on a warm sandbox), pause, resume, stop, end, fork, configure, and access
to its workspace. docs/architecture/session-lifecycle.md draws the state machine (states.py holds it)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from opentelemetry import trace

from .. import archive
from ..errors import AshError, Gone, NotFound
from ..observability.tracing import traced
from ..paths import chown_tree, remove_tree
from ..sandbox.admission import Admission
from ..sandbox.manager import SandboxRequest
from ..sandbox.pool import PoolEntry
from ..sandbox.profile import profile_key
from ..states import SessionStatus
from ..store.models import Agent, SessionRow, utcnow
from .core import SessionCore, SessionPart
from .events import dumps
from .options import validated_config
from .turns import TurnRunner

log = logging.getLogger(__name__)

MESSAGE_COPY_BATCH = 500
T = TypeVar("T")


class CreateCounter(Protocol):
    """Told of every create: when it arrives, and when it holds a pool slot or failed (a runner reports its creates
    as load, cluster/load.py)."""

    def arrived(self) -> None: ...

    def settled(self) -> None: ...


class NoCounting:
    def arrived(self) -> None:
        pass

    def settled(self) -> None:
        pass


class _Arrival:
    """One create, counted as pending until it holds a slot (or fails)."""

    def __init__(self, counter: CreateCounter) -> None:
        self._counter = counter
        self._pending = True
        counter.arrived()

    def settle(self) -> None:
        if self._pending:
            self._pending = False
            self._counter.settled()


class Lifecycle(SessionPart):
    """Create, pause, resume, stop, end, fork and configure sessions."""

    def __init__(self, core: SessionCore, turns: TurnRunner, creates: CreateCounter | None = None) -> None:
        super().__init__(core)
        self._turns = turns
        self._creates = creates or NoCounting()

    @traced("session.create")
    async def create(self, tenant_id: str, agent_name: str, options: dict[str, Any]) -> SessionRow:
        started = time.perf_counter()
        arrival = _Arrival(self._creates)
        try:
            agent = await self._agents.get(tenant_id, agent_name)
            config = validated_config(options)
            # A sandbox started ahead for exactly this agent version and configuration: no process start at all.
            warm = self._pool.has_warm(tenant_id, agent.name)
            entry = self._pool.claim(profile_key(agent, config)) if warm else None
            if entry is not None:
                arrival.settle()
                session = await self._create_on_warm(agent, config, entry, created_event(agent, "warm"))
                path = "warm"
            else:
                session = await self._create_cold(agent, config, arrival)
                path = "cold"
        finally:
            arrival.settle()
        trace.get_current_span().set_attribute("ash.session_id", str(session.id))
        self._core.metrics.session_create_seconds.labels(path).observe(time.perf_counter() - started)
        if path == "warm":
            self._pool.refill()  # its `created` event went in with the session row
        else:
            await self._core.event(session, *created_event(agent, path))
        return session

    async def _create_cold(self, agent: Agent, config: dict[str, Any], arrival: _Arrival) -> SessionRow:
        slot = await self._pool.reserve(self._core.evict)  # 503 before anything exists when every sandbox is busy
        arrival.settle()
        admission: Admission | None = None
        try:
            # Its turn to start, before the session exists: a create refused for a long queue leaves nothing.
            admission = await self._pool.admission.admit()
            session = await self._store.add_session(
                SessionRow(
                    tenant_id=agent.tenant_id,
                    agent_name=agent.name,
                    agent_version=agent.version,
                    status=SessionStatus.STARTING,
                    config=config,
                    runner_id=self._core.server_id,
                    created_at=utcnow(),
                    last_active_at=utcnow(),
                )
            )
            try:
                self._data.make_session(agent.tenant_id, str(session.id), self._sandboxes.owner)
                await self._core.copy_agent(agent, self._data.workspace(agent.tenant_id, str(session.id)))
            except BaseException:
                await self._core.set(session, status=SessionStatus.ERROR)
                raise
            async with self._core.live.locked(session.id, session.tenant_id) as live:
                await self._core.start_sandbox(session, live, slot=slot, admission=admission)
        finally:
            if admission is not None:
                admission.release()  # a no-op once the start released it
            slot.release()
        return session

    async def _create_on_warm(
        self, agent: Agent, config: dict[str, Any], entry: PoolEntry, event: tuple[str, dict[str, Any]]
    ) -> SessionRow:
        """The session takes the id, folder and sandbox the warm pool reserved for it; `event` is stored with it."""
        try:
            session = await self._store.add_session_on_sandbox(
                SessionRow(
                    id=uuid.UUID(entry.session_id),
                    tenant_id=agent.tenant_id,
                    agent_name=agent.name,
                    agent_version=agent.version,
                    status=SessionStatus.ACTIVE,
                    config=config,
                    sandbox_id=entry.id,
                    runner_id=self._core.server_id,
                    created_at=utcnow(),
                    last_active_at=utcnow(),
                ),
                entry.id,
                [(event[0], dumps(event[1]))],
            )
        except BaseException:
            await self._pool.retire(entry)
            raise
        self._pool.claimed(entry)
        self._core.live.entry(session.id, session.tenant_id).sandbox = entry.sandbox
        self._core.listen(session, entry.sandbox)
        return session

    async def prepare_warm(self, agent: Agent) -> tuple[str, SandboxRequest] | None:
        """For the warm pool: reserve a session id and its folder (the agent's files copied in, as at create) and
        say what its sandbox looks like for a session of this agent with the default configuration."""
        try:
            await self._agents.materialize(agent)
        except NotFound:
            return None  # its files are not to be had (deployed before bundles, on another server)
        session_id = str(uuid.uuid4())
        self._data.make_session(agent.tenant_id, session_id, self._sandboxes.owner)
        await self._core.copy_agent(agent, self._data.workspace(agent.tenant_id, session_id))
        dependencies = await self._agents.bundle(agent)
        return session_id, self._core.request(
            agent, session_id, {}, resume=None, assigned=False, dependencies=dependencies
        )

    async def pause(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow:
        async with self._core.locked(tenant_id, session_id) as (session, live):
            if session.status in (SessionStatus.PAUSED, SessionStatus.STOPPED):
                return session
            self._core.refuse_while_running(live)
            await self._core.refuse_if_elsewhere(session)
            await self._core.drop_if_stale(session, live)
            # Warm pause: the sandbox stays up so resume is immediate; eviction may still reclaim it. The snapshot
            # is taken first, so another server can resume the session from here.
            await self._core.persist(session)
            await self._core.set(session, status=SessionStatus.PAUSED, event=("lifecycle", {"action": "paused"}))
        return session

    @traced("session.resume")
    async def resume(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow:
        started = time.perf_counter()
        async with self._core.locked(tenant_id, session_id) as (session, live):
            if await self._store.get_agent(session.tenant_id, session.agent_name) is None:
                # Even a warm sandbox is not resumed: the agent it ran is gone (the reference answers 404 too).
                raise NotFound(f"Agent not found: {session.agent_name!r}, the agent of this session, was deleted")
            await self._core.drop_if_stale(session, live)
            if session.status == SessionStatus.ACTIVE and live.sandbox is not None and live.sandbox.alive:
                return session
            if live.sandbox is not None and live.sandbox.alive:
                self._pool.resume_warm_hits += 1
                self._pool.touch(live.sandbox.id)
                resumed = ("lifecycle", {"action": "resumed", "path": "warm"})
                await self._core.set(session, status=SessionStatus.ACTIVE, last_active_at=utcnow(), event=resumed)
                path = "warm"
            else:
                await self._core.drop_sandbox(live, cold=False)
                await self._core.start_sandbox(session, live)
                self._pool.resume_cold_hits += 1
                path = "cold"
        self._core.metrics.resume_seconds.labels(path).observe(time.perf_counter() - started)
        if path == "cold":
            await self._core.event(session, "lifecycle", {"action": "resumed", "path": path})
        return session

    async def stop(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow:
        async with self._core.locked(tenant_id, session_id) as (session, live):
            await self._core.refuse_if_elsewhere(session)
            await self._turns.finish_turn(live)
            await self._core.drop_if_stale(session, live)
            if live.sandbox is not None:
                await self._core.persist(session)
            await self._core.drop_sandbox(live, cold=True)
            await self._core.set(session, status=SessionStatus.STOPPED, sandbox_id="")
        await self._core.event(session, "lifecycle", {"action": "stopped"})
        return session

    async def end(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow:
        async with self._core.locked(tenant_id, session_id, allow_ended=True) as (session, live):
            if session.status == SessionStatus.ENDED:
                return session
            await self._turns.finish_turn(live)
            await self._core.drop_sandbox(live, cold=False)
            await self._store.delete_cold_sandboxes(session.id)
            await self._core.set(session, status=SessionStatus.ENDED, sandbox_id="", ended_at=utcnow())
        self._core.live.forget(session.id)
        await self._core.event(session, "lifecycle", {"action": "ended"})
        return session

    async def fork(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow:
        """A new, paused session whose workspace, transcript and message history are copies of this one's now.
        Resuming it continues the conversation from here, independently of the parent."""
        child_id = uuid.uuid4()
        async with self._core.locked(tenant_id, session_id) as (parent, live):
            self._core.refuse_while_running(live)
            await self._core.drop_if_stale(parent, live)
            await self._core.ensure_files(parent)
            source = self._data.session(tenant_id, str(parent.id))
            target = self._data.make_session(tenant_id, str(child_id), self._sandboxes.owner)
            try:
                await asyncio.to_thread(self._copy_session_files, source, target)
                child = await self._store.add_session(
                    SessionRow(
                        id=child_id,
                        tenant_id=tenant_id,
                        agent_name=parent.agent_name,
                        agent_version=parent.agent_version,
                        status=SessionStatus.PAUSED,
                        config=dict(parent.config),
                        sdk_session_id=parent.sdk_session_id,
                        parent_session_id=parent.id,
                        runner_id=self._core.server_id,
                        created_at=utcnow(),
                        last_active_at=utcnow(),
                    )
                )
            except BaseException:
                await remove_tree(target)
                raise
            after = 0
            while batch := await self._store.list_messages(tenant_id, parent.id, after=after, limit=MESSAGE_COPY_BATCH):
                await self._store.append_messages(child, [(m.role, m.content) for m in batch])
                after = batch[-1].sequence
        await self._core.event(parent, "lifecycle", {"action": "forked", "childSessionId": str(child.id)})
        await self._core.event(child, "lifecycle", {"action": "created", "forkedFrom": str(parent.id), "path": "fork"})
        try:
            await self._core.persist(child)
        except AshError as exc:
            log.warning("fork %s of session %s: snapshot failed: %s", child.id, parent.id, exc.message)
        return child

    def _copy_session_files(self, source: Path, target: Path) -> None:
        # The parent's sandbox may be alive: its files are copied without following any symlink (archive.py).
        for name in ("workspace", "home"):
            if (source / name).is_dir():
                archive.copy_tree(source / name, target / name)
            else:
                (target / name).mkdir()
            chown_tree(target / name, self._sandboxes.owner)

    async def update_config(self, tenant_id: str, session_id: uuid.UUID, changes: dict[str, Any]) -> SessionRow:
        session = await self._core.get(tenant_id, session_id)
        if session.status == SessionStatus.ENDED:
            raise Gone(f"Session is ended: {session_id}")
        config = {**session.config, **validated_config(changes)}
        await self._core.set(session, config=config)
        return session

    async def workspace_for_read(self, tenant_id: str, session_id: uuid.UUID) -> tuple[Path, str]:
        """The folder to read the session's workspace from, and `sandbox` (a live sandbox may still change it) or
        `snapshot` (restored here first if this server's copy is missing or out of date)."""
        session = await self._core.get(tenant_id, session_id)
        workspace = self._data.workspace(tenant_id, str(session.id))
        live = self._core.live.get(session.id)
        alive = live is not None and live.sandbox is not None and live.sandbox.alive
        if alive and self._core.runs_here(session):
            return workspace, "sandbox"
        async with self._core.locked(tenant_id, session_id, allow_ended=True) as (session, _):
            await self._core.ensure_files(session)
        return workspace, "snapshot"

    async def change_workspace(
        self, tenant_id: str, session_id: uuid.UUID, change: Callable[[Path, tuple[int, int] | None], T]
    ) -> T:
        """Run `change(workspace, owner)` (in a thread) on this server's up-to-date copy of the workspace, live or
        not; a snapshot follows. 409 while another server runs the session."""
        async with self._core.locked(tenant_id, session_id) as (session, live):
            await self._core.refuse_if_elsewhere(session)
            await self._core.drop_if_stale(session, live)
            await self._core.ensure_files(session)
            if session.runner_id != self._core.server_id:
                await self._core.set(session, runner_id=self._core.server_id)
            result = await asyncio.to_thread(
                change, self._data.workspace(tenant_id, str(session.id)), self._sandboxes.owner
            )
        self._snapshots.schedule(session)
        return result


def created_event(agent: Agent, path: str) -> tuple[str, dict[str, Any]]:
    return "lifecycle", {"action": "created", "agentVersion": agent.version, "path": path}
