"""Sessions: create, converse, pause, resume, stop, end, fork; recovery after a restart and draining at shutdown.

A session's files live in `sessions/<tenant>/<id>/` (workspace and the SDK's config dir with its transcripts), so a
sandbox is disposable: a new one started on the same folder with `resume=<sdk session id>` continues the same
conversation (the cold path). The warm path keeps the sandbox, and its connected SDK client, alive. Snapshots
(snapshots/) copy that folder to a store that other servers share, so the cold path also works on a server that
never saw the session: the server that last ran a session is its `runnerId`, and another server restores the
latest snapshot before it starts a sandbox. docs/architecture/session-lifecycle.md draws the state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.trace import Tracer

from ash_bridge.protocol import SESSION_OPTIONS, Command, SdkOptions, TurnSdkOptions

from .. import __version__, archive
from ..agents import AgentService, validate_env
from ..errors import AshError, Conflict, Gone, Invalid, NotFound, SessionMoved, SnapshotError
from ..observability import logs
from ..observability.metrics import Metrics
from ..observability.tracing import current_traceparent, traced
from ..paths import DataDir
from ..sandbox.launcher import chown_tree
from ..sandbox.manager import SandboxManager, SandboxRequest
from ..sandbox.pool import PoolEntry, SandboxPool, Slot
from ..sandbox.profile import profile_key
from ..sandbox.sandbox import Sandbox
from ..snapshots.service import SnapshotService
from ..states import PermissionMode, SandboxState, SessionStatus, check_transition
from ..store.models import Agent, Session, StreamEvent, utcnow
from ..store.repository import Store
from .events import dumps, message_role, sse_events, timeline_events
from .live import LiveSession, LiveSessions
from .turn import Frame, Subscription, Turn

log = logging.getLogger(__name__)

# How long an interrupted turn may take to end before its sandbox is stopped.
INTERRUPT_GRACE_S = 10.0
# At shutdown, how long running turns may go on before they are interrupted (uvicorn has already waited for the
# streams of the turns whose clients are still there).
DRAIN_TURNS_S = 10.0
# A session folder without a session row is left alone this long (a warm sandbox's may be in the making).
ORPHAN_FOLDER_AGE_S = 3600.0
MESSAGE_COPY_BATCH = 500
# What a turn leaves behind is written this often before the failure is given up on (waits 0.1, 0.2, 0.4 s ...).
WRITE_ATTEMPTS = 4
WRITE_RETRY_S = 0.1
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """Per-message SDK options (the session's configuration fills in what they leave out)."""

    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    effort: str | None = None
    thinking: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None

    def sdk(self) -> TurnSdkOptions:
        """The wire form (ash_bridge.protocol.TURN_OPTIONS), only the options given."""
        given = {
            "model": self.model,
            "maxTurns": self.max_turns,
            "maxBudgetUsd": self.max_budget_usd,
            "effort": self.effort,
            "thinking": self.thinking,
            "outputFormat": self.output_format,
        }
        return cast(TurnSdkOptions, {k: v for k, v in given.items() if v is not None})


def effective_sdk_options(config: dict[str, Any], turn: TurnOptions) -> SdkOptions:
    """What the bridge's SDK client should look like for this turn: session config, then the message's options.

    Always complete, so a turn without an option returns to the session's value instead of keeping the last one.
    """
    options: dict[str, Any] = {k: config.get(k) for k in SESSION_OPTIONS}
    if options.get("permissionMode") == PermissionMode.PERMISSIONS_BY_AGENT:
        options["permissionMode"] = PermissionMode.DEFAULT.value
    options.update(turn.sdk())
    return cast(SdkOptions, {k: v for k, v in options.items() if v is not None})


class SessionService:
    def __init__(
        self,
        store: Store,
        data: DataDir,
        agents: AgentService,
        sandboxes: SandboxManager,
        *,
        pool: SandboxPool,
        snapshots: SnapshotService,
        idle_timeout_s: float,
        retention_s: float,
        debug_timing: bool = False,
        exclusive: bool = False,
    ) -> None:
        """`exclusive` (runner mode): serve only the sessions assigned to this server (`runnerId`); coordinators
        move sessions between runners, a runner never takes one over by itself."""
        self._exclusive = exclusive
        # Runner load reporting (cluster/runner.py): creates received since start, and those not yet holding a
        # pool slot (after that the pool counts them).
        self.creates_received = 0
        self.creates_pending = 0
        self._idle_timeout_s = idle_timeout_s
        self._retention_s = retention_s
        self._debug_timing = debug_timing
        self._store = store
        self._data = data
        self._agents = agents
        self._sandboxes = sandboxes
        self._pool = pool
        self._snapshots = snapshots
        self.server_id = pool.server_id
        self._live = LiveSessions()
        self._background: set[asyncio.Task[None]] = set()
        self.metrics: Metrics | None = None  # set by the app once metrics exist
        self.tracer: Tracer = trace.NoOpTracer()  # set by the app when tracing is configured
        pool.evictor = self._evict
        pool.prepare_warm = self.prepare_warm
        pool.profile_of = profile_key

    @contextlib.asynccontextmanager
    async def _locked(
        self, tenant_id: str, session_id: uuid.UUID, *, allow_ended: bool = False
    ) -> AsyncIterator[tuple[Session, LiveSession]]:
        """The session, read again once its lock is held (it may have changed while this request waited), and its
        live entry. An ended session is 410 unless `allow_ended`."""
        await self.get(tenant_id, session_id)  # 404 (or moved) before an entry is made for it
        async with self._live.locked(session_id, tenant_id) as live:
            session = await self.get(tenant_id, session_id)
            if session.status == SessionStatus.ENDED and not allow_ended:
                raise Gone(f"Session is ended: {session_id}")
            yield session, live

    # -- Queries ----------------------------------------------------------------------------------------------

    async def get(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        session = await self._store.get_session(tenant_id, session_id)
        if session is None:
            raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
        if self._exclusive and session.runner_id not in (None, self.server_id):
            raise SessionMoved(
                f"session {session_id} is run by runner {session.runner_id}, not this one",
                runner_id=session.runner_id,
            )
        return session

    async def list_sessions(
        self, tenant_id: str, *, agent: str | None, status: str | None, limit: int, offset: int
    ) -> Sequence[Session]:
        return await self._store.list_sessions(tenant_id, agent=agent, status=status, limit=limit, offset=offset)

    async def count_sessions(self, tenant_id: str, *, agent: str | None, status: str | None) -> int:
        return await self._store.count_matching_sessions(tenant_id, agent=agent, status=status)

    def sandbox_of(self, session_id: uuid.UUID) -> Sandbox | None:
        live = self._live.get(session_id)
        return live.sandbox if live is not None else None

    # -- Lifecycle --------------------------------------------------------------------------------------------

    @traced("session.create")
    async def create(self, tenant_id: str, agent_name: str, options: dict[str, Any]) -> Session:
        started = time.perf_counter()
        arrival = _Arrival(self)
        try:
            agent = await self._agents.get(tenant_id, agent_name)
            config = _validated_config(options)
            # A sandbox started ahead for exactly this agent version and configuration: no process start at all.
            warm = self._pool.has_warm(tenant_id, agent.name)
            entry = self._pool.claim(profile_key(agent, config)) if warm else None
            if entry is not None:
                arrival.settle()
                session = await self._create_on_warm(agent, config, entry)
                path = "warm"
            else:
                session = await self._create_cold(agent, config, arrival)
                path = "cold"
        finally:
            arrival.settle()
        trace.get_current_span().set_attribute("ash.session_id", str(session.id))
        if self.metrics is not None:
            self.metrics.session_create_seconds.labels(path).observe(time.perf_counter() - started)
        await self._event(session, "lifecycle", {"action": "created", "agentVersion": agent.version, "path": path})
        if path == "warm":
            self._pool.refill()
        return session

    async def _create_cold(self, agent: Agent, config: dict[str, Any], arrival: _Arrival) -> Session:
        slot = await self._pool.reserve()  # 503 before anything exists when every sandbox is busy
        arrival.settle()
        try:
            session = await self._store.add_session(
                Session(
                    tenant_id=agent.tenant_id,
                    agent_name=agent.name,
                    agent_version=agent.version,
                    status=SessionStatus.STARTING,
                    config=config,
                    runner_id=self.server_id,
                    created_at=utcnow(),
                    last_active_at=utcnow(),
                )
            )
            try:
                self._data.make_session(agent.tenant_id, str(session.id), self._sandboxes.owner)
                await self._copy_agent(agent, self._data.workspace(agent.tenant_id, str(session.id)))
            except BaseException:
                await self._set(session, status=SessionStatus.ERROR)
                raise
            async with self._live.locked(session.id, session.tenant_id) as live:
                await self._start_sandbox(session, live, slot=slot)
        finally:
            slot.release()
        return session

    async def _create_on_warm(self, agent: Agent, config: dict[str, Any], entry: PoolEntry) -> Session:
        """The session takes the id, folder and sandbox the warm pool reserved for it."""
        try:
            session = await self._store.add_session_on_sandbox(
                Session(
                    id=uuid.UUID(entry.session_id),
                    tenant_id=agent.tenant_id,
                    agent_name=agent.name,
                    agent_version=agent.version,
                    status=SessionStatus.ACTIVE,
                    config=config,
                    sandbox_id=entry.id,
                    runner_id=self.server_id,
                    created_at=utcnow(),
                    last_active_at=utcnow(),
                ),
                entry.id,
            )
        except BaseException:
            await self._pool.retire(entry)
            raise
        self._pool.claimed(entry)
        self._live.entry(session.id, session.tenant_id).sandbox = entry.sandbox
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
        await self._copy_agent(agent, self._data.workspace(agent.tenant_id, session_id))
        return session_id, self._request(agent, session_id, {}, resume=None, assigned=False)

    async def _copy_agent(self, agent: Agent, workspace: Path) -> None:
        folder = await self._agents.materialize(agent)
        await asyncio.to_thread(shutil.copytree, folder, workspace, symlinks=True)

    def _request(
        self, agent: Agent, session_id: str, config: dict[str, Any], *, resume: str | None, assigned: bool = True
    ) -> SandboxRequest:
        """What a sandbox of this session looks like: the warm pool's profile key covers every input here."""
        workspace = self._data.workspace(agent.tenant_id, session_id)
        bridge_config: dict[str, Any] = {"cwd": str(workspace), **effective_sdk_options(config, TurnOptions())}
        if resume:
            bridge_config["resume"] = resume
        credential = config.get("credentialId")
        return SandboxRequest(
            session_id=session_id,
            tenant_id=agent.tenant_id,
            agent_dir=self._agents.folder(agent),
            workspace=workspace,
            home=self._data.home(agent.tenant_id, session_id),
            bridge_config=bridge_config,
            user_env={**agent.env, **config.get("extraEnv", {})},
            agent_name=agent.name,
            agent_config=dict(agent.config),
            credential_id=str(credential) if credential else None,
            assigned=assigned,
        )

    @traced("sandbox.start")
    async def _start_sandbox(self, session: Session, live: LiveSession, slot: Slot | None = None) -> None:
        """Start a sandbox on the session's folder (cold path); the caller holds the session's lock. The files
        come from the latest snapshot when this server's copy is missing or another server ran the session since.
        """
        agent = await self._store.get_agent(session.tenant_id, session.agent_name)
        if agent is None:
            raise NotFound(f"Agent not found: {session.agent_name!r}, the agent of this session, no longer exists")
        await self._ensure_files(session)  # SnapshotError leaves the session as it was
        await self._agents.materialize(agent)  # the sandbox mounts the agent's folder
        if session.runner_id != self.server_id:
            await self._set(session, runner_id=self.server_id)
        request = self._request(agent, str(session.id), session.config, resume=session.sdk_session_id)
        own_slot = slot is None
        if slot is None:
            slot = await self._pool.reserve()
        try:
            sandbox = await self._pool.start(request, slot)
        except AshError:
            await self._set(session, status=SessionStatus.ERROR, sandbox_id="")
            raise
        finally:
            if own_slot:
                slot.release()
        live.sandbox = sandbox
        await self._set(session, status=SessionStatus.ACTIVE, sandbox_id=sandbox.id, last_active_at=utcnow())

    async def _ensure_files(self, session: Session) -> None:
        """Make this server's copy of the session's folder current: it is, if this server ran the session last;
        otherwise (or if there is none) the latest snapshot replaces it."""
        sid = str(session.id)
        local = self._data.workspace(session.tenant_id, sid).is_dir()
        if local and session.runner_id in (None, self.server_id) and await self._snapshots.is_current(session):
            return
        restored = await self._snapshots.restore(session)
        if restored is not None:
            return
        if not local:
            elsewhere = f"; it last ran on server {session.runner_id}" if session.runner_id else ""
            raise SnapshotError(
                f"session {sid} has no files on this server and no snapshot to restore them from{elsewhere}",
                session_id=sid,
            )
        log.warning("session %s last ran on %s and has no snapshot; using this server's copy", sid, session.runner_id)

    async def _drop_if_stale(self, session: Session, live: LiveSession) -> None:
        """Another server has run this session since this one started its sandbox: that sandbox (and the files
        it has) are out of date. It goes, without a snapshot; the cold path restores the newer state."""
        if live.sandbox is not None and session.runner_id not in (None, self.server_id):
            log.info("session %s moved to server %s; dropping its stale sandbox here", session.id, session.runner_id)
            await self._drop_sandbox(live, cold=False)

    async def _persist(self, session: Session) -> None:
        """Snapshot the session now, if snapshots are on and this server runs it (SnapshotError if that fails:
        nothing is freed then)."""
        if session.runner_id in (None, self.server_id):
            await self._snapshots.take(session)

    async def _refuse_if_elsewhere(self, session: Session) -> None:
        """409 when the server that runs this session (another one) has a sandbox for it: only that server can
        persist or stop it. (Other servers' sandboxes of a session this server runs are stale, not a conflict.)"""
        runner = session.runner_id
        if runner in (None, self.server_id):
            return
        assert runner is not None
        if await self._store.live_sandbox_on(session.id, runner) is not None:
            raise Conflict(
                f"session {session.id} is running on another server ({runner}); send this there", server_id=runner
            )

    async def pause(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        async with self._locked(tenant_id, session_id) as (session, live):
            if session.status in (SessionStatus.PAUSED, SessionStatus.STOPPED):
                return session
            self._refuse_while_running(live)
            await self._refuse_if_elsewhere(session)
            await self._drop_if_stale(session, live)
            # Warm pause: the sandbox stays up so resume is immediate; eviction may still reclaim it. The snapshot
            # is taken first, so another server can resume the session from here.
            await self._persist(session)
            await self._set(session, status=SessionStatus.PAUSED)
        await self._event(session, "lifecycle", {"action": "paused"})
        return session

    @traced("session.resume")
    async def resume(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        started = time.perf_counter()
        async with self._locked(tenant_id, session_id) as (session, live):
            if await self._store.get_agent(session.tenant_id, session.agent_name) is None:
                # Even a warm sandbox is not resumed: the agent it ran is gone (the reference answers 404 too).
                raise NotFound(f"Agent not found: {session.agent_name!r}, the agent of this session, was deleted")
            await self._drop_if_stale(session, live)
            if session.status == SessionStatus.ACTIVE and live.sandbox is not None and live.sandbox.alive:
                return session
            if live.sandbox is not None and live.sandbox.alive:
                self._pool.resume_warm_hits += 1
                self._pool.touch(live.sandbox.id)
                await self._set(session, status=SessionStatus.ACTIVE, last_active_at=utcnow())
                path = "warm"
            else:
                await self._drop_sandbox(live, cold=False)
                await self._start_sandbox(session, live)
                self._pool.resume_cold_hits += 1
                path = "cold"
        if self.metrics is not None:
            self.metrics.resume_seconds.labels(path).observe(time.perf_counter() - started)
        await self._event(session, "lifecycle", {"action": "resumed", "path": path})
        return session

    async def stop(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        async with self._locked(tenant_id, session_id) as (session, live):
            await self._refuse_if_elsewhere(session)
            await self._finish_turn(live)
            await self._drop_if_stale(session, live)
            if live.sandbox is not None:
                await self._persist(session)
            await self._drop_sandbox(live, cold=True)
            await self._set(session, status=SessionStatus.STOPPED, sandbox_id="")
        await self._event(session, "lifecycle", {"action": "stopped"})
        return session

    async def end(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        async with self._locked(tenant_id, session_id, allow_ended=True) as (session, live):
            if session.status == SessionStatus.ENDED:
                return session
            await self._finish_turn(live)
            await self._drop_sandbox(live, cold=False)
            await self._store.delete_cold_sandboxes(session.id)
            await self._set(session, status=SessionStatus.ENDED, sandbox_id="", ended_at=utcnow())
        self._live.forget(session.id)
        await self._event(session, "lifecycle", {"action": "ended"})
        return session

    async def fork(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        """A new, paused session whose workspace, transcript and message history are copies of this one's now.
        Resuming it continues the conversation from here, independently of the parent."""
        child_id = uuid.uuid4()
        async with self._locked(tenant_id, session_id) as (parent, live):
            self._refuse_while_running(live)
            await self._drop_if_stale(parent, live)
            await self._ensure_files(parent)
            source = self._data.session(tenant_id, str(parent.id))
            target = self._data.make_session(tenant_id, str(child_id), self._sandboxes.owner)
            try:
                await asyncio.to_thread(self._copy_session_files, source, target)
                child = await self._store.add_session(
                    Session(
                        id=child_id,
                        tenant_id=tenant_id,
                        agent_name=parent.agent_name,
                        agent_version=parent.agent_version,
                        status=SessionStatus.PAUSED,
                        config=dict(parent.config),
                        sdk_session_id=parent.sdk_session_id,
                        parent_session_id=parent.id,
                        runner_id=self.server_id,
                        created_at=utcnow(),
                        last_active_at=utcnow(),
                    )
                )
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            after = 0
            while batch := await self._store.list_messages(tenant_id, parent.id, after=after, limit=MESSAGE_COPY_BATCH):
                await self._store.append_messages(child, [(m.role, m.content) for m in batch])
                after = batch[-1].sequence
        await self._event(parent, "lifecycle", {"action": "forked", "childSessionId": str(child.id)})
        await self._event(child, "lifecycle", {"action": "created", "forkedFrom": str(parent.id), "path": "fork"})
        try:
            await self._persist(child)
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

    async def update_config(self, tenant_id: str, session_id: uuid.UUID, changes: dict[str, Any]) -> Session:
        session = await self.get(tenant_id, session_id)
        if session.status == SessionStatus.ENDED:
            raise Gone(f"Session is ended: {session_id}")
        config = {**session.config, **_validated_config(changes)}
        await self._set(session, config=config)
        return session

    # -- Turns ------------------------------------------------------------------------------------------------

    @traced("session.message")
    async def send(
        self, tenant_id: str, session_id: uuid.UUID, content: str | list[dict[str, Any]], options: TurnOptions
    ) -> Turn:
        received = time.perf_counter()
        sandbox_start_ms = 0.0
        async with self._locked(tenant_id, session_id, allow_ended=True) as (session, live):
            if session.status != SessionStatus.ACTIVE:
                raise Invalid(
                    f"Session is {session.status}: {session_id}"
                    + ("; resume it first" if session.status.resumable else ""),
                    status=session.status,
                )
            self._refuse_while_running(live)
            await self._drop_if_stale(session, live)
            if live.sandbox is None or not live.sandbox.alive:
                # The sandbox is gone (evicted, crashed, or the server restarted): continue on a new one.
                await self._drop_sandbox(live, cold=False)
                starting = time.perf_counter()
                await self._start_sandbox(session, live)
                sandbox_start_ms = (time.perf_counter() - starting) * 1000
                self._pool.resume_cold_hits += 1
            sandbox = live.sandbox
            assert sandbox is not None
            # The user's message is stored before anything runs: once the stream starts it is acknowledged.
            await self._store.append_messages(session, [("user", dumps({"type": "user", "content": content}))])
            if live.next_seq is None:
                live.next_seq = await self._store.last_stream_seq(session.id) + 1
            turn = Turn(session_id=str(session.id), first_seq=live.next_seq)
            live.turn = turn
            live.turn_started.set()
            live.turn_started = asyncio.Event()
            turn.publish("session_start", {"sessionId": turn.session_id, "version": __version__})
            # The turn's task inherits these: its log lines carry the session and sandbox they belong to.
            logs.session_id.set(str(session.id))
            logs.sandbox_id.set(sandbox.id)
            # ASH_DEBUG_TIMING: the server's part before the bridge gets the query (lookups, locks, storing the
            # message; a sandbox start, if one was needed, is counted apart).
            turn.timings = {
                "server_lookup_ms": (time.perf_counter() - received) * 1000 - sandbox_start_ms,
                "sandbox_start_ms": sandbox_start_ms,
                "received": received,
            }
            turn.task = asyncio.create_task(self._run_turn(session, live, sandbox, turn, content, options))
            self._pool.mark(sandbox.id, SandboxState.RUNNING)  # never evicted while the turn runs
        return turn

    def _refuse_while_running(self, live: LiveSession) -> None:
        if live.turn is not None and not live.turn.finished:
            raise Conflict(f"a turn is already running on this session ({live.turn.id})", turn_id=live.turn.id)

    @traced("bridge.query")
    async def _run_turn(
        self,
        session: Session,
        live: LiveSession,
        sandbox: Sandbox,
        turn: Turn,
        content: str | list[dict[str, Any]],
        options: TurnOptions,
    ) -> None:
        started = time.perf_counter()
        command = Command(
            cmd="query",
            id=turn.id,
            prompt=content,
            include_partial_messages=True,
            # The trace context travels to the bridge with the query, so the sandbox side can join the trace.
            options={**effective_sdk_options(session.config, options), "traceparent": current_traceparent()},
        )
        sdk_session_id = session.sdk_session_id
        first_event_ms: float | None = None
        first_token_ms: float | None = None
        try:
            async for event in sandbox.request(command):
                if first_event_ms is None:
                    first_event_ms = (time.perf_counter() - started) * 1000
                if event.event == "message" and event.message is not None:
                    message = event.message
                    if first_token_ms is None and message.get("type") in ("stream_event", "assistant"):
                        first_token_ms = (time.perf_counter() - started) * 1000
                    role = message_role(message)
                    if role is not None:
                        await self._store.record_message(
                            session,
                            role,
                            dumps(message),
                            [(k, dumps(v)) for k, v in timeline_events(message)],
                        )
                    for name, data, partial in sse_events(message):
                        turn.publish(name, data, partial=partial)
                    if isinstance(message.get("session_id"), str) and message["session_id"]:
                        sdk_session_id = message["session_id"]
                elif event.event == "error":
                    error = "turn interrupted" if turn.interrupted else event.error or "unknown error"
                    await self._event(session, "error", {"error": error, "code": event.code})
                    turn.publish("error", {"error": error})
                elif event.event == "done" and event.sdk_session_id:
                    sdk_session_id = event.sdk_session_id
                if turn.needs_flush():
                    await self._flush(session, turn)
                # Backpressure: a sender that lags holds the turn, and through the socket, the bridge.
                await turn.wait_for_sender()
        except AshError as exc:
            await self._event(session, "error", {"error": exc.message})
            turn.publish("error", {"error": exc.message})
        except Exception as exc:  # a turn must always end with done, whatever broke
            log.exception("turn %s of session %s failed", turn.id, session.id)
            turn.publish("error", {"error": f"internal error: {type(exc).__name__}"})
        finally:
            if turn.interrupted and not turn.had_error:
                turn.publish("error", {"error": "turn interrupted"})
                with contextlib.suppress(Exception):
                    await self._event(session, "error", {"error": "turn interrupted", "code": "interrupted"})
            turn.publish("done", {"sessionId": turn.session_id})
            # The SDK session id first: it is the session's memory on its next cold resume.
            with contextlib.suppress(Exception):  # retried, logged and counted in _retried already
                await self._retried(
                    "sdk_session_id",
                    session,
                    lambda: self._set(session, sdk_session_id=sdk_session_id, last_active_at=utcnow()),
                )
            with contextlib.suppress(Exception):
                await self._flush(session, turn)
            live.next_seq = turn.next_seq
            turn.finish()
            if live.turn is turn:
                live.turn = None
            self._live.forget_if_idle(session.id)  # its sandbox may have died with the turn
            self._pool.mark(sandbox.id, SandboxState.WAITING)
            # After the stream's `done`: the snapshot never holds the turn's client back.
            self._snapshots.schedule(session)
            log.info(
                "turn %s finished in %.0f ms%s",
                turn.id,
                (time.perf_counter() - started) * 1000,
                " (interrupted)" if turn.interrupted else " with an error" if turn.had_error else "",
            )
            if self.metrics is not None:
                self.metrics.turn_seconds.observe(time.perf_counter() - started)
                if first_event_ms is not None:
                    self.metrics.first_event_seconds.observe(first_event_ms / 1000)
            if self._debug_timing:
                timings = turn.timings
                log.info(
                    "timing session=%s turn=%s server_lookup_ms=%.2f sandbox_start_ms=%.2f bridge_first_event_ms=%.2f "
                    "sdk_first_token_ms=%.2f total_ms=%.2f",
                    session.id,
                    turn.id,
                    timings.get("server_lookup_ms", -1.0),
                    timings.get("sandbox_start_ms", 0.0),
                    first_event_ms if first_event_ms is not None else -1.0,
                    first_token_ms if first_token_ms is not None else -1.0,
                    (time.perf_counter() - timings.get("received", started)) * 1000,
                )

    async def _flush(self, session: Session, turn: Turn) -> None:
        frames = turn.take_unflushed()
        rows = [
            StreamEvent(
                session_id=session.id,
                seq=f.seq,
                turn_id=turn.id,
                event=f.event,
                data=f.data_json,
                partial=f.partial,
                created_at=utcnow(),
            )
            for f in frames
        ]
        if rows:
            # Taken from the turn once: a retry writes the same frames, none is lost in between.
            await self._retried("stream_frames", session, lambda: self._store.append_stream_events(rows))

    async def _retried(self, what: str, session: Session, write: Callable[[], Awaitable[None]]) -> None:
        """A write the session cannot do without (its memory, its replayable frames), tried WRITE_ATTEMPTS times;
        each failure is logged and counted (ash_turn_end_write_failures_total), the last one raised."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await write()
                return
            except Exception as exc:
                if self.metrics is not None:
                    self.metrics.turn_end_write_failures.labels(what).inc()
                last = attempt == WRITE_ATTEMPTS
                log.log(
                    logging.ERROR if last else logging.WARNING,
                    "session %s: storing its %s failed (attempt %d of %d%s): %s",
                    session.id,
                    what.replace("_", " "),
                    attempt,
                    WRITE_ATTEMPTS,
                    ", giving up" if last else ", retrying",
                    exc,
                )
                if last:
                    raise
                await asyncio.sleep(WRITE_RETRY_S * 2 ** (attempt - 1))

    async def subscribe(
        self,
        tenant_id: str,
        session_id: uuid.UUID,
        *,
        after: int | None,
        include_partial: bool,
        turn: Turn | None = None,
        follow: bool = False,
    ) -> Subscription:
        """Follow a session's frames after `after` (the SSE Last-Event-ID), then its live turn, if any.

        With `turn`, the subscriber is that turn's sender (its lag holds the turn back). Without `after`, it starts
        at the running turn's first frame, or replays the latest finished turn. With `follow`, it does not end
        after a turn but waits for the session's next one.
        """
        session = await self.get(tenant_id, session_id)
        sender = turn is not None
        live = self._live.get(session.id)
        if turn is None and live is not None and live.turn is not None and not live.turn.finished:
            turn = live.turn
        if after is None:
            if turn is not None:
                after = turn.first_seq - 1
            else:
                first = await self._store.last_turn_start(session.id)
                after = first - 1 if first is not None else await self._store.last_stream_seq(session.id)

        async def load(after_seq: int, before: int | None, limit: int) -> list[Frame]:
            rows = await self._store.stream_events_after(session.id, after_seq, before=before, limit=limit)
            return [Frame(r.seq, r.event, r.data, r.partial) for r in rows]

        waiter = functools.partial(self._live.wait_for_turn, session.id, session.tenant_id) if follow else None
        return Subscription(
            after, include_partial=include_partial, loader=load, turn=turn, sender=sender, next_turn=waiter
        )

    async def interrupt(self, tenant_id: str, session_id: uuid.UUID) -> Turn | None:
        """Abort the running turn, if any. Its stream ends with `error` (interrupted) and `done`."""
        session = await self.get(tenant_id, session_id)
        live = self._live.get(session.id)
        turn = live.turn if live is not None else None
        if live is None or turn is None or turn.finished or live.sandbox is None:
            return None
        await self._interrupt(live, turn)
        return turn

    async def _interrupt(self, live: LiveSession, turn: Turn) -> None:
        turn.interrupted = True
        sandbox = live.sandbox
        if sandbox is None:
            return
        with contextlib.suppress(AshError):
            await sandbox.send(Command(cmd="interrupt", id=turn.id))
        self._watch_interrupt(live, turn, sandbox)

    def _watch_interrupt(self, live: LiveSession, turn: Turn, sandbox: Sandbox) -> None:
        """If the SDK does not end an interrupted turn soon, end the sandbox: the turn then ends at once."""

        async def watchdog() -> None:
            if turn.task is None:
                return
            try:
                await asyncio.wait_for(asyncio.shield(turn.task), timeout=INTERRUPT_GRACE_S)
            except TimeoutError:
                log.warning("turn %s ignored its interrupt; stopping sandbox %s", turn.id, sandbox.id)
                sandbox.kill()

        task = asyncio.create_task(watchdog())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finish_turn(self, live: LiveSession) -> None:
        turn = live.turn
        if turn is None or turn.finished or live.sandbox is None:
            return
        await self._interrupt(live, turn)
        if turn.task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(turn.task), timeout=INTERRUPT_GRACE_S + 5)

    async def _drop_sandbox(self, live: LiveSession, *, cold: bool) -> None:
        """Stop the session's sandbox. `cold`: the session lives on without one (its files are persisted)."""
        if live.sandbox is not None:
            await self._pool.release(live.sandbox, cold=cold)
            live.sandbox = None

    # -- Eviction and sweeps ----------------------------------------------------------------------------------

    async def _evict(self, entry: PoolEntry, reason: str) -> bool:
        """The pool wants this idle session's sandbox back: persist the session, then stop the sandbox. False if
        the session is busy (a request holds it, a turn runs) or its snapshot failed: it keeps its sandbox."""
        sid = uuid.UUID(entry.session_id)
        live = self._live.get(sid)
        if live is None or live.sandbox is not entry.sandbox:
            await self._pool.release(entry.sandbox, cold=True)
            return True
        if live.users or live.lock.locked() or live.running:
            return False
        async with live.lock:  # free: taken at once, nothing ran in between
            session = await self._store.get_session(live.tenant_id, sid)
            if (
                session is None
                or session.status == SessionStatus.ENDED
                or session.runner_id not in (None, self.server_id)
            ):
                await self._drop_sandbox(live, cold=False)  # nothing to keep here
                return True
            try:
                await self._persist(session)
            except AshError as exc:
                log.warning("not evicting session %s: its snapshot failed: %s", sid, exc.message)
                return False
            await self._drop_sandbox(live, cold=True)
            await self._store.update_session(sid, sandbox_id="")
        self._live.forget_if_idle(sid)
        await self._event(session, "lifecycle", {"action": "sandbox_stopped", "reason": reason})
        return True

    async def sweep_idle(self) -> int:
        """Stop sandboxes idle longer than ASH_IDLE_TIMEOUT_MS. Their sessions keep their status and continue on
        a new sandbox (cold path) with their next message or resume."""
        return await self._pool.sweep_idle(self._idle_timeout_s)

    async def sweep_retention(self) -> int:
        """Remove the files (local folder, snapshots) of sessions ended longer than ASH_SESSION_RETENTION_MS ago.
        Returns how many local folders went."""
        cutoff = utcnow() - timedelta(seconds=self._retention_s)
        folders: dict[uuid.UUID, Path] = {}
        sessions_dir = self._data.root / "sessions"
        for tenant_dir in sessions_dir.iterdir() if sessions_dir.is_dir() else []:
            for folder in tenant_dir.iterdir() if tenant_dir.is_dir() else []:
                with contextlib.suppress(ValueError):
                    if not folder.name.startswith("."):
                        folders[uuid.UUID(folder.name)] = folder
        removed = 0
        ids = list(folders)
        for start in range(0, len(ids), 500):
            states = await self._store.session_states(ids[start : start + 500])
            for session_id in ids[start : start + 500]:
                state = states.get(session_id)
                folder = folders[session_id]
                if state is None:
                    # No session: a failed create, or a warm sandbox's folder (maybe in the making).
                    reserved = any(e.session_id == str(session_id) for e in self._pool.entries())
                    with contextlib.suppress(OSError):
                        if reserved or time.time() - folder.stat().st_mtime < ORPHAN_FOLDER_AGE_S:
                            continue
                elif state[0] != SessionStatus.ENDED or state[1] is None or state[1] > cutoff:
                    continue
                await asyncio.to_thread(shutil.rmtree, folder, True)
                removed += 1
        await self._snapshots.expire(cutoff)
        return removed

    async def run_idle_sweeper(self) -> None:
        """The idle sweep, and (less often) the retention sweep, until cancelled."""
        interval = max(1.0, min(60.0, self._idle_timeout_s / 4))
        retention_every = max(1.0, min(600.0, self._retention_s / 4))
        last_retention = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                reclaimed = await self.sweep_idle()
                if reclaimed:
                    log.info("stopped %d idle sandbox(es)", reclaimed)
                if time.monotonic() - last_retention >= retention_every:
                    last_retention = time.monotonic()
                    if removed := await self.sweep_retention():
                        log.info("removed the files of %d ended session(s)", removed)
            except Exception:
                log.exception("sweep failed")

    # -- Runner mode ------------------------------------------------------------------------------------------

    def load(self) -> tuple[int, int]:
        """(sandboxes held or about to be, creates received): what a runner reports in its heartbeats. Read in
        one go, so a create is counted in exactly one of the two (cluster/registry.py)."""
        return self._pool.occupied + self.creates_pending, self.creates_received

    def reset_load(self) -> None:
        """A runner registers (again): coordinators count placements from zero."""
        self.creates_received = 0

    async def drop_moved(self) -> int:
        """Drop this server's sandboxes of sessions a coordinator has moved to another runner (this runner was
        declared dead meanwhile) or that ended: their files here are stale, and two copies must never run."""
        held = [sid for sid, live in self._live.items() if live.sandbox is not None or live.turn is not None]
        moved = await self._store.moved_sessions(held, self.server_id)
        for session_id in moved:
            live = self._live.get(session_id)
            if live is None:
                continue
            async with live.lock:
                log.warning("session %s moved to another runner; dropping its sandbox here", session_id)
                await self._finish_turn(live)
                await self._drop_sandbox(live, cold=False)
            self._live.forget(session_id)
        return len(moved)

    # -- Start-up and shutdown --------------------------------------------------------------------------------

    async def recover(self) -> int:
        """After a restart no sandbox of this server exists: what its predecessor left is killed (the pool), and
        the sessions it was running are paused, resumable on the cold path. Other servers' sessions are theirs."""
        await self._pool.recover()
        recovered = await self._store.sessions_with_status(
            [SessionStatus.ACTIVE, SessionStatus.STARTING], runner_id=self.server_id
        )
        for session in recovered:
            await self._set(session, status=SessionStatus.PAUSED, sandbox_id="")
            await self._event(session, "lifecycle", {"action": "paused", "reason": "server restarted"})
        return len(recovered)

    async def shutdown(self) -> None:
        """Drain: let running turns finish (for a while), interrupt the rest, persist every session that has a
        sandbox here, then stop everything. Sessions that were active are left paused, resumable anywhere."""
        turns = [live.turn.task for live in self._live.values() if live.turn is not None and live.turn.task]
        pending = [t for t in turns if t is not None and not t.done()]
        if pending:
            log.info("waiting up to %.0f s for %d running turn(s)", DRAIN_TURNS_S, len(pending))
            await asyncio.wait(pending, timeout=DRAIN_TURNS_S)
        for live in list(self._live.values()):
            await self._finish_turn(live)
        for session_id, live in list(self._live.items()):
            if live.sandbox is None:
                continue
            async with live.lock:
                session = await self._store.get_session(live.tenant_id, session_id)
                if session is None or live.sandbox is None:
                    continue
                if session.runner_id not in (None, self.server_id):
                    await self._drop_sandbox(live, cold=False)  # another server runs it now: not ours to persist
                    continue
                try:
                    await self._persist(session)
                except AshError as exc:
                    log.warning("session %s: snapshot at shutdown failed: %s", session_id, exc.message)
                await self._drop_sandbox(live, cold=True)
                if session.status in (SessionStatus.ACTIVE, SessionStatus.STARTING):
                    await self._set(session, status=SessionStatus.PAUSED, sandbox_id="")
                    await self._event(session, "lifecycle", {"action": "paused", "reason": "server shutting down"})
                else:
                    await self._set(session, sandbox_id="")
        await self._snapshots.close()
        await self._pool.close()
        await self._sandboxes.stop_all()

    # -- Workspace access ---------------------------------------------------------------------------------------

    async def workspace_for_read(self, tenant_id: str, session_id: uuid.UUID) -> tuple[Path, str]:
        """The folder to read the session's workspace from, and `sandbox` (a live sandbox may still change it) or
        `snapshot` (restored here first if this server's copy is missing or out of date)."""
        session = await self.get(tenant_id, session_id)
        workspace = self._data.workspace(tenant_id, str(session.id))
        live = self._live.get(session.id)
        alive = live is not None and live.sandbox is not None and live.sandbox.alive
        if alive and session.runner_id in (None, self.server_id):
            return workspace, "sandbox"
        async with self._locked(tenant_id, session_id, allow_ended=True) as (session, _):
            await self._ensure_files(session)
        return workspace, "snapshot"

    async def change_workspace(
        self, tenant_id: str, session_id: uuid.UUID, change: Callable[[Path, tuple[int, int] | None], T]
    ) -> T:
        """Run `change(workspace, owner)` (in a thread) on this server's up-to-date copy of the workspace, live or
        not; a snapshot follows. 409 while another server runs the session."""
        async with self._locked(tenant_id, session_id) as (session, live):
            await self._refuse_if_elsewhere(session)
            await self._drop_if_stale(session, live)
            await self._ensure_files(session)
            if session.runner_id != self.server_id:
                await self._set(session, runner_id=self.server_id)
            result = await asyncio.to_thread(
                change, self._data.workspace(tenant_id, str(session.id)), self._sandboxes.owner
            )
        self._snapshots.schedule(session)
        return result

    # -- Helpers ----------------------------------------------------------------------------------------------

    async def _set(self, session: Session, **values: Any) -> None:
        if "status" in values:
            check_transition(session.status, values["status"])
        for key, value in values.items():
            setattr(session, key, value)
        await self._store.update_session(session.id, **values)

    async def _event(self, session: Session, kind: str, data: dict[str, Any]) -> None:
        await self._store.append_events(session, [(kind, dumps(data))])


class _Arrival:
    """A create this server has received but not yet given a pool slot (see SessionService.load)."""

    def __init__(self, service: SessionService) -> None:
        self._service = service
        self._pending = True
        service.creates_received += 1
        service.creates_pending += 1

    def settle(self) -> None:
        if self._pending:
            self._pending = False
            self._service.creates_pending -= 1


def _validated_config(options: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in options.items() if v is not None}
    mode = config.get("permissionMode")
    if mode is not None and mode not in set(PermissionMode):
        raise Invalid(f"permissionMode must be one of {sorted(PermissionMode)}", permissionMode=mode)
    if "extraEnv" in config:
        config["extraEnv"] = validate_env(config["extraEnv"])
    return config
