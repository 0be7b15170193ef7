"""Sessions: create, converse, pause, resume, stop, end; and recovery after a restart.

A session's files live in `sessions/<tenant>/<id>/` (workspace and the SDK's config dir with its transcripts), so a
sandbox is disposable: a new one started on the same folder with `resume=<sdk session id>` continues the same
conversation (the cold path). The warm path keeps the sandbox, and its connected SDK client, alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer

from ash_bridge.protocol import Command

from .. import __version__
from ..agents import AgentService, validate_env
from ..errors import AshError, Conflict, Gone, Invalid, NotFound
from ..observability import logs
from ..observability.metrics import Metrics
from ..observability.tracing import current_traceparent, traced
from ..paths import DataDir
from ..sandbox.manager import SandboxManager, SandboxRequest
from ..sandbox.sandbox import Sandbox
from ..store.models import Session, StreamEvent, utcnow
from ..store.repository import Store
from .events import dumps, message_role, sse_events, timeline_events
from .turn import Frame, Subscription, Turn

log = logging.getLogger(__name__)

PERMISSION_MODES = {"default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "permissionsByAgent"}
# Session options that shape the SDK client, and so the sandbox: stored on the session, applied at sandbox start.
SDK_OPTIONS = (
    "model",
    "systemPrompt",
    "permissionMode",
    "allowedTools",
    "disallowedTools",
    "mcpServers",
    "betas",
    "subagents",
    "initialAgent",
)
# How long an interrupted turn may take to end before its sandbox is stopped.
INTERRUPT_GRACE_S = 10.0


@dataclass
class LiveSession:
    """What exists of a session in this process: its sandbox and its running turn."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sandbox: Sandbox | None = None
    turn: Turn | None = None
    last_used: float = field(default_factory=time.monotonic)
    # The next SSE id (stream frame sequence) of this session; loaded from the store at its first turn here.
    next_seq: int | None = None
    turn_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_turn(self, limit_s: float | None) -> Turn | None:
        """The running turn, or the next one to start within `limit_s` seconds."""
        started = self.turn_started
        if self.turn is not None and not self.turn.finished:
            return self.turn
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), limit_s)
        return self.turn if self.turn is not None and not self.turn.finished else None


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """Per-message SDK options (the session's configuration fills in what they leave out)."""

    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    effort: str | None = None
    thinking: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None


def effective_sdk_options(config: dict[str, Any], turn: TurnOptions) -> dict[str, Any]:
    """What the bridge's SDK client should look like for this turn: session config, then the message's options.

    Always complete, so a turn without an option returns to the session's value instead of keeping the last one.
    """
    options: dict[str, Any] = {k: config.get(k) for k in SDK_OPTIONS}
    if options.get("permissionMode") == "permissionsByAgent":
        options["permissionMode"] = "default"
    per_turn = {
        "model": turn.model,
        "maxTurns": turn.max_turns,
        "maxBudgetUsd": turn.max_budget_usd,
        "effort": turn.effort,
        "thinking": turn.thinking,
        "outputFormat": turn.output_format,
    }
    options.update({k: v for k, v in per_turn.items() if v is not None})
    return {k: v for k, v in options.items() if v is not None}


class SessionService:
    def __init__(
        self,
        store: Store,
        data: DataDir,
        agents: AgentService,
        sandboxes: SandboxManager,
        *,
        idle_timeout_s: float,
        debug_timing: bool = False,
    ) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._debug_timing = debug_timing
        self._store = store
        self._data = data
        self._agents = agents
        self._sandboxes = sandboxes
        self._live: dict[uuid.UUID, LiveSession] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.metrics: Metrics | None = None  # set by the app once metrics exist
        self.tracer: Tracer = trace.NoOpTracer()  # set by the app when tracing is configured
        self.resume_warm_hits = 0
        self.resume_cold_hits = 0

    def _live_of(self, session_id: uuid.UUID) -> LiveSession:
        live = self._live.get(session_id)
        if live is None:
            live = self._live[session_id] = LiveSession()
        return live

    # -- Queries ----------------------------------------------------------------------------------------------

    async def get(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        session = await self._store.get_session(tenant_id, session_id)
        if session is None:
            raise NotFound(f"session {session_id} not found", session_id=str(session_id))
        return session

    async def list_sessions(
        self, tenant_id: str, *, agent: str | None, status: str | None, limit: int, offset: int
    ) -> Sequence[Session]:
        return await self._store.list_sessions(tenant_id, agent=agent, status=status, limit=limit, offset=offset)

    def sandbox_of(self, session_id: uuid.UUID) -> Sandbox | None:
        live = self._live.get(session_id)
        return live.sandbox if live is not None else None

    # -- Lifecycle --------------------------------------------------------------------------------------------

    @traced("session.create")
    async def create(self, tenant_id: str, agent_name: str, options: dict[str, Any]) -> Session:
        agent = await self._agents.get(tenant_id, agent_name)
        config = _validated_config(options)
        session = await self._store.add_session(
            Session(
                tenant_id=tenant_id,
                agent_name=agent.name,
                agent_version=agent.version,
                status="starting",
                config=config,
                created_at=utcnow(),
                last_active_at=utcnow(),
            )
        )
        trace.get_current_span().set_attribute("ash.session_id", str(session.id))
        workspace = self._data.workspace(tenant_id, str(session.id))
        self._data.make_session(tenant_id, str(session.id), self._sandboxes.owner)
        await asyncio.to_thread(shutil.copytree, self._agents.folder(agent), workspace, symlinks=True)
        live = self._live_of(session.id)
        async with live.lock:
            await self._start_sandbox(session, live)
        await self._event(session, "lifecycle", {"action": "created", "agentVersion": agent.version})
        return session

    @traced("sandbox.start")
    async def _start_sandbox(self, session: Session, live: LiveSession) -> None:
        """Start a sandbox on the session's folder (cold path); the caller holds the session's lock."""
        agent = await self._store.get_agent(session.tenant_id, session.agent_name)
        if agent is None:
            raise NotFound(f"agent {session.agent_name!r} of this session no longer exists")
        sid = str(session.id)
        bridge_config: dict[str, Any] = {
            "cwd": str(self._data.workspace(session.tenant_id, sid)),
            **effective_sdk_options(session.config, TurnOptions()),
        }
        if session.sdk_session_id:
            bridge_config["resume"] = session.sdk_session_id
        request = SandboxRequest(
            session_id=sid,
            tenant_id=session.tenant_id,
            agent_dir=self._agents.folder(agent),
            workspace=self._data.workspace(session.tenant_id, sid),
            home=self._data.home(session.tenant_id, sid),
            bridge_config=bridge_config,
            user_env={**agent.env, **session.config.get("extraEnv", {})},
        )
        try:
            sandbox = await self._sandboxes.start(request)
        except AshError:
            await self._set(session, status="error", sandbox_id="")
            raise
        live.sandbox = sandbox
        live.last_used = time.monotonic()
        await self._set(session, status="active", sandbox_id=sandbox.id, last_active_at=utcnow())

    async def pause(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        session = await self.get(tenant_id, session_id)
        live = self._live_of(session.id)
        async with live.lock:
            if session.status == "ended":
                raise Gone(f"session {session_id} has ended")
            if session.status in ("paused", "stopped"):
                return session
            self._refuse_while_running(live)
            # Warm pause: the sandbox stays up so resume is immediate; eviction may still reclaim it.
            await self._set(session, status="paused")
        await self._event(session, "lifecycle", {"action": "paused"})
        return session

    @traced("session.resume")
    async def resume(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        session = await self.get(tenant_id, session_id)
        live = self._live_of(session.id)
        async with live.lock:
            if session.status == "ended":
                raise Gone(f"session {session_id} has ended")
            if session.status == "active" and live.sandbox is not None and live.sandbox.alive:
                return session
            if live.sandbox is not None and live.sandbox.alive:
                self.resume_warm_hits += 1
                live.last_used = time.monotonic()
                await self._set(session, status="active", last_active_at=utcnow())
                path = "warm"
            else:
                await self._drop_sandbox(live)
                self.resume_cold_hits += 1
                await self._start_sandbox(session, live)
                path = "cold"
        await self._event(session, "lifecycle", {"action": "resumed", "path": path})
        return session

    async def stop(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        session = await self.get(tenant_id, session_id)
        live = self._live_of(session.id)
        async with live.lock:
            if session.status == "ended":
                raise Gone(f"session {session_id} has ended")
            await self._finish_turn(live)
            await self._drop_sandbox(live)
            await self._set(session, status="stopped", sandbox_id="")
        await self._event(session, "lifecycle", {"action": "stopped"})
        return session

    async def end(self, tenant_id: str, session_id: uuid.UUID) -> Session:
        session = await self.get(tenant_id, session_id)
        live = self._live_of(session.id)
        async with live.lock:
            if session.status == "ended":
                return session
            await self._finish_turn(live)
            await self._drop_sandbox(live)
            await self._set(session, status="ended", sandbox_id="", ended_at=utcnow())
        self._live.pop(session.id, None)
        await self._event(session, "lifecycle", {"action": "ended"})
        return session

    async def update_config(self, tenant_id: str, session_id: uuid.UUID, changes: dict[str, Any]) -> Session:
        session = await self.get(tenant_id, session_id)
        if session.status == "ended":
            raise Gone(f"session {session_id} has ended")
        config = {**session.config, **_validated_config(changes)}
        await self._set(session, config=config)
        return session

    # -- Turns ------------------------------------------------------------------------------------------------

    @traced("session.message")
    async def send(
        self, tenant_id: str, session_id: uuid.UUID, content: str | list[dict[str, Any]], options: TurnOptions
    ) -> Turn:
        session = await self.get(tenant_id, session_id)
        live = self._live_of(session.id)
        async with live.lock:
            if session.status != "active":
                raise Invalid(
                    f"session {session_id} is {session.status}"
                    + ("; resume it first" if session.status in ("paused", "stopped", "error") else ""),
                    status=session.status,
                )
            self._refuse_while_running(live)
            if live.sandbox is None or not live.sandbox.alive:
                # The sandbox is gone (evicted, crashed, or the server restarted): continue on a new one.
                await self._drop_sandbox(live)
                self.resume_cold_hits += 1
                await self._start_sandbox(session, live)
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
            turn.task = asyncio.create_task(self._run_turn(session, live, sandbox, turn, content, options))
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
        try:
            async for event in sandbox.request(command):
                if first_event_ms is None:
                    first_event_ms = (time.perf_counter() - started) * 1000
                if event.event == "message" and event.message is not None:
                    message = event.message
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
            with contextlib.suppress(Exception):
                await self._flush(session, turn)
                await self._set(session, sdk_session_id=sdk_session_id, last_active_at=utcnow())
            live.next_seq = turn.next_seq
            turn.finish()
            if live.turn is turn:
                live.turn = None
            live.last_used = time.monotonic()
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
                log.info(
                    "timing session=%s turn=%s first_bridge_event_ms=%.2f total_ms=%.2f",
                    session.id,
                    turn.id,
                    first_event_ms or -1.0,
                    (time.perf_counter() - started) * 1000,
                )

    async def _flush(self, session: Session, turn: Turn) -> None:
        frames = turn.take_unflushed()
        await self._store.append_stream_events(
            [
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
        )

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

        waiter = self._live_of(session.id).wait_for_turn if follow else None
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

    async def _drop_sandbox(self, live: LiveSession) -> None:
        if live.sandbox is not None:
            await self._sandboxes.stop(live.sandbox)
            live.sandbox = None

    # -- Idle sweep -------------------------------------------------------------------------------------------

    async def sweep_idle(self) -> int:
        """Stop sandboxes idle longer than ASH_IDLE_TIMEOUT_MS. Their sessions keep their status and continue on
        a new sandbox (cold path) with their next message or resume."""
        now = time.monotonic()
        reclaimed = 0
        for session_id, live in list(self._live.items()):
            if live.sandbox is None or (live.turn is not None and not live.turn.finished):
                continue
            if now - live.last_used < self._idle_timeout_s or live.lock.locked():
                continue
            async with live.lock:
                if live.sandbox is not None and (live.turn is None or live.turn.finished):
                    await self._drop_sandbox(live)
                    await self._store.update_session(session_id, sandbox_id="")
                    reclaimed += 1
        return reclaimed

    async def run_idle_sweeper(self) -> None:
        interval = max(1.0, min(60.0, self._idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                reclaimed = await self.sweep_idle()
            except Exception:
                log.exception("idle sweep failed")
            else:
                if reclaimed:
                    log.info("stopped %d idle sandbox(es)", reclaimed)

    # -- Start-up and shutdown --------------------------------------------------------------------------------

    async def recover(self) -> int:
        """After a restart no sandbox exists: sessions that had one are paused, resumable on the cold path."""
        recovered = await self._store.sessions_with_status(["active", "starting"])
        for session in recovered:
            await self._set(session, status="paused", sandbox_id="")
            await self._event(session, "lifecycle", {"action": "paused", "reason": "server restarted"})
        return len(recovered)

    async def shutdown(self) -> None:
        for live in list(self._live.values()):
            await self._finish_turn(live)
        await self._sandboxes.stop_all()

    # -- Helpers ----------------------------------------------------------------------------------------------

    async def _set(self, session: Session, **values: Any) -> None:
        for key, value in values.items():
            setattr(session, key, value)
        await self._store.update_session(session.id, **values)

    async def _event(self, session: Session, kind: str, data: dict[str, Any]) -> None:
        await self._store.append_events(session, [(kind, dumps(data))])


def _validated_config(options: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in options.items() if v is not None}
    mode = config.get("permissionMode")
    if mode is not None and mode not in PERMISSION_MODES:
        raise Invalid(f"permissionMode must be one of {sorted(PERMISSION_MODES)}", permissionMode=mode)
    if "extraEnv" in config:
        config["extraEnv"] = validate_env(config["extraEnv"])
    return config
