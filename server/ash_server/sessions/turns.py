"""Turns: a message runs as one SDK query in the session's sandbox; its frames are published to the stream (and
its subscribers), its messages and timeline stored, its SDK session id kept for the cold path; interrupts end it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ash_bridge.protocol import Command

from .. import __version__
from ..errors import AshError, Invalid, NotFound, out_of_space
from ..observability import logs
from ..observability.tracing import current_traceparent, traced
from ..sandbox.sandbox import Sandbox
from ..states import SandboxState, SessionStatus
from ..store.base import StaleRow
from ..store.models import SessionRow, utcnow
from ..store.timeline import TurnMessage
from .core import SessionCore, SessionPart
from .events import dumps, message_role, sse_events, timeline_events
from .live import LiveSession
from .mcp_failures import CODE as MCP_CODE
from .mcp_failures import McpFailures, failed_servers
from .options import TurnOptions, effective_sdk_options
from .turn import Frame, Subscription, Turn, TurnTimings

log = logging.getLogger(__name__)
TURN_DISK_FULL = "the server's disk is full: the turn stopped; retry once space is freed"

# How long an interrupted turn may take to end before its sandbox is stopped.
INTERRUPT_GRACE_S = 10.0
# What a turn leaves behind is written this often before the failure is given up on (waits 0.1, 0.2, 0.4 s ...).
WRITE_ATTEMPTS = 4
WRITE_RETRY_S = 0.1
# Followers' reads of stored frames (catching up past the live window) running at once, on this server.
FOLLOWER_READS = 2


class TurnRunner(SessionPart):
    """Send messages, run their turns, follow their streams, interrupt them."""

    def __init__(self, core: SessionCore, *, debug_timing: bool = False) -> None:
        super().__init__(core)
        self._debug_timing = debug_timing
        self._follower_reads = asyncio.Semaphore(FOLLOWER_READS)
        self._mcp = McpFailures(core.sandboxes)

    @traced("session.message")
    async def send(
        self,
        tenant_id: str,
        session_id: uuid.UUID,
        content: str | list[dict[str, Any]],
        options: TurnOptions,
        *,
        auto_resume: bool = True,
    ) -> Turn:
        """`auto_resume`: a paused, stopped or failed session is resumed by its message (as `resume` would), so a
        conversation continues after a restart or an idle stop; False keeps the old answer, 400 until resumed."""
        received = time.perf_counter()
        try:
            return await self._send(tenant_id, session_id, content, options, auto_resume, received, from_memory=True)
        except StaleRow as exc:
            # The row kept in memory was out of date (nothing was written): again, with the row read.
            log.info("%s; reading it again", exc)
            return await self._send(tenant_id, session_id, content, options, auto_resume, received, from_memory=False)

    async def _send(
        self,
        tenant_id: str,
        session_id: uuid.UUID,
        content: str | list[dict[str, Any]],
        options: TurnOptions,
        auto_resume: bool,
        received: float,
        *,
        from_memory: bool,
    ) -> Turn:
        sandbox_start_ms = 0.0
        async with self._core.locked_for_message(tenant_id, session_id, from_memory=from_memory) as (
            session,
            live,
            kept,
        ):
            read = time.perf_counter()
            if session.status.resumable and auto_resume:
                await self._resume_implicitly(session, live)
            elif session.status != SessionStatus.ACTIVE:
                raise Invalid(
                    f"Session is {session.status}: {session_id}"
                    + ("; resume it first" if session.status.resumable else ""),
                    status=session.status,
                )
            self._core.refuse_while_running(live)
            await self._core.drop_if_stale(session, live)
            if live.sandbox is None or not live.sandbox.alive:
                # The sandbox is gone (evicted, crashed, or the server restarted): continue on a new one.
                await self._core.drop_sandbox(live, cold=False)
                starting = time.perf_counter()
                await self._core.start_sandbox(session, live)
                sandbox_start_ms = (time.perf_counter() - starting) * 1000
                self._pool.resume_cold_hits += 1
            sandbox = live.sandbox
            assert sandbox is not None
            if live.next_seq is None:
                live.next_seq = await self._store.last_stream_seq(session.id) + 1
            turn = Turn(session_id=str(session.id), first_seq=live.next_seq)
            turn.publish("session_start", {"sessionId": turn.session_id, "version": __version__})
            # The user's message and the turn's start are stored, together, before anything runs: once the
            # stream starts the message is acknowledged, and a crash from here on leaves a turn recovery can end.
            storing = time.perf_counter()
            try:
                await self._store.append_messages(
                    session,
                    [("user", dumps({"type": "user", "content": content}))],
                    self._rows(session, turn, turn.take_unflushed()),
                    check_row=kept,
                )
            except StaleRow:
                live.row = None
                raise
            stored = time.perf_counter()
            live.turn = turn
            self._core.usage.follow(turn)
            live.turn_started.set()
            live.turn_started = asyncio.Event()
            # The turn's task inherits these: its log lines carry the session and sandbox they belong to.
            logs.session_id.set(str(session.id))
            logs.sandbox_id.set(sandbox.id)
            # ASH_DEBUG_TIMING: the server's part before the bridge gets the query (lookups, locks, storing the
            # message; a sandbox start, if one was needed, is counted apart).
            arrived = logs.request_arrived.get()
            turn.timings = TurnTimings(
                received=received,
                http_ms=(received - arrived) * 1000 if arrived is not None else -1.0,
                server_lookup_ms=(time.perf_counter() - received) * 1000 - sandbox_start_ms,
                sandbox_start_ms=sandbox_start_ms,
                read_ms=(read - received) * 1000,
                store_ms=(stored - storing) * 1000,
            )
            turn.task = asyncio.create_task(self._run_turn(session, live, sandbox, turn, content, options))
            self._pool.mark(sandbox.id, SandboxState.RUNNING)  # never evicted while the turn runs
        return turn

    async def _resume_implicitly(self, session: SessionRow, live: LiveSession) -> None:
        """What `resume` does, under the lock `send` holds: the sandbox itself is started (or kept) below."""
        if await self._store.get_agent(session.tenant_id, session.agent_name) is None:
            raise NotFound(f"Agent not found: {session.agent_name!r}, the agent of this session, was deleted")
        warm = live.sandbox is not None and live.sandbox.alive
        if warm:
            self._pool.resume_warm_hits += 1
        resumed = {"action": "resumed", "path": "warm" if warm else "cold", "implicit": True}
        await self._core.set(
            session, status=SessionStatus.ACTIVE, last_active_at=utcnow(), event=("lifecycle", resumed)
        )

    @traced("bridge.query")
    async def _run_turn(
        self,
        session: SessionRow,
        live: LiveSession,
        sandbox: Sandbox,
        turn: Turn,
        content: str | list[dict[str, Any]],
        options: TurnOptions,
    ) -> None:
        started = time.perf_counter()
        looked_up = turn.timings.received + (turn.timings.server_lookup_ms + turn.timings.sandbox_start_ms) / 1000
        turn.timings.task_start_ms = (started - looked_up) * 1000
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
                if first_event_ms is None and sandbox.last_sent is not None:
                    turn.timings.query_written_ms = (sandbox.last_sent - started) * 1000
                if first_event_ms is None:
                    first_event_ms = (time.perf_counter() - started) * 1000
                if event.event == "message" and event.message is not None:
                    message = event.message
                    if first_token_ms is None and message.get("type") in ("stream_event", "assistant"):
                        first_token_ms = (time.perf_counter() - started) * 1000
                    for said in await self._mcp.explain(sandbox, failed_servers(message)):
                        log.warning("session %s: %s", session.id, said)
                        failure = {"error": said, "code": MCP_CODE}
                        turn.unwritten.append(TurnMessage.event("error", dumps(failure)))
                        turn.publish("error", failure)
                    role = message_role(message)
                    message_json = dumps(message)  # once, for the store and every subscriber
                    if role is not None:
                        # Stored with the frames, at the next flush or the turn's end: one transaction for both.
                        events = [(k, dumps(v)) for k, v in timeline_events(message)]
                        turn.unwritten.append(TurnMessage(role, message_json, events))
                    for name, data, partial in sse_events(message):
                        if data is message:
                            turn.publish_json(name, message_json, partial=partial)
                        else:
                            turn.publish(name, data, partial=partial)
                    if isinstance(message.get("session_id"), str) and message["session_id"]:
                        sdk_session_id = message["session_id"]
                elif event.event == "error":
                    error = "turn interrupted" if turn.interrupted else event.error or "unknown error"
                    turn.unwritten.append(TurnMessage.event("error", dumps({"error": error, "code": event.code})))
                    turn.publish("error", {"error": error})
                elif event.event == "done" and event.sdk_session_id:
                    sdk_session_id = event.sdk_session_id
                if turn.needs_flush():
                    await self._flush(session, turn)
                # Backpressure: a sender that lags holds the turn, and through the socket, the bridge.
                await turn.wait_for_sender()
        except AshError as exc:
            turn.unwritten.append(TurnMessage.event("error", dumps({"error": exc.message})))
            turn.publish("error", {"error": exc.message})
        except Exception as exc:  # a turn must always end with done, whatever broke
            if out_of_space(exc):
                log.error("turn %s of session %s: the disk is full: %s", turn.id, session.id, exc)
                turn.publish("error", {"error": TURN_DISK_FULL})
            else:
                log.exception("turn %s of session %s failed", turn.id, session.id)
                turn.publish("error", {"error": f"internal error: {type(exc).__name__}"})
        finally:
            if turn.interrupted and not turn.had_error:
                turn.publish("error", {"error": "turn interrupted"})
                interrupted = dumps({"error": "turn interrupted", "code": "interrupted"})
                turn.unwritten.append(TurnMessage.event("error", interrupted))
            turn.publish("done", {"sessionId": turn.session_id})
            await self._write_end(session, turn, sdk_session_id)
            live.next_seq = turn.next_seq
            turn.finish()
            if live.turn is turn:
                live.turn = None
            self._core.live.forget_if_idle(session.id)  # its sandbox may have died with the turn
            self._pool.mark(sandbox.id, SandboxState.WAITING)
            # After the stream's `done`: the snapshot never holds the turn's client back.
            self._snapshots.schedule(session)
            log.info(
                "turn %s finished in %.0f ms%s",
                turn.id,
                (time.perf_counter() - started) * 1000,
                " (interrupted)" if turn.interrupted else " with an error" if turn.had_error else "",
            )
            self._core.metrics.turn_seconds.observe(time.perf_counter() - started)
            if first_event_ms is not None:
                self._core.metrics.first_event_seconds.observe(first_event_ms / 1000)
            if self._debug_timing:
                log.info("%s", turn.timings.describe(str(session.id), turn.id, started, first_event_ms, first_token_ms))

    async def _flush(self, session: SessionRow, turn: Turn) -> None:
        # Taken from the turn once: a retry writes the same rows, none is lost in between.
        messages, rows = turn.take_unwritten(), self._rows(session, turn, turn.take_unflushed())
        if messages or rows:
            await self._retried("stream_frames", session, lambda: self._store.write_turn(session, messages, rows))

    async def _write_end(self, session: SessionRow, turn: Turn, sdk_session_id: str | None) -> None:
        """The turn's end in one transaction: its last messages and frames, the SDK session id (the session's
        memory on its next cold resume) and its last activity. Should that keep failing, the SDK session id is
        tried alone: the frames can be lost (the turn's stream was delivered), the memory must not be."""
        self._core.usage.forget(turn)  # with nothing awaited before the take: no usage falls in between
        messages, rows = turn.take_unwritten(), self._rows(session, turn, turn.take_unflushed())
        now = utcnow()
        try:
            await self._retried(
                "turn_end",
                session,
                lambda: self._store.write_turn(
                    session, messages, rows, sdk_session_id=sdk_session_id, last_active_at=now
                ),
            )
        except Exception:  # retried, logged and counted in _retried already
            try:
                await self._retried(
                    "sdk_session_id",
                    session,
                    lambda: self._store.update_session(session.id, sdk_session_id=sdk_session_id, last_active_at=now),
                )
            except Exception:
                return
        session.sdk_session_id, session.last_active_at = sdk_session_id, now

    @staticmethod
    def _rows(session: SessionRow, turn: Turn, frames: list[Frame]) -> list[dict[str, Any]]:
        return stream_rows(session.id, turn.id, frames)

    async def _retried(self, what: str, session: SessionRow, write: Callable[[], Awaitable[None]]) -> None:
        """A write the session cannot do without (its memory, its replayable frames), tried WRITE_ATTEMPTS times;
        each failure is logged and counted (ash_turn_end_write_failures_total), the last one raised."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await write()
                return
            except Exception as exc:
                self._core.metrics.turn_end_write_failures.labels(what).inc()
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
        sender = turn is not None
        if not sender:
            # (The sender's turn was started by `send` for this very tenant and session: nothing to check again.)
            await self._core.get(tenant_id, session_id)
        live = self._core.live.get(session_id)
        if turn is None and live is not None and live.turn is not None and not live.turn.finished:
            turn = live.turn
        if after is None:
            if turn is not None:
                after = turn.first_seq - 1
            else:
                first = await self._store.last_turn_start(session_id)
                after = first - 1 if first is not None else await self._store.last_stream_seq(session_id)

        async def load(after_seq: int, before: int | None, limit: int) -> list[Frame]:
            # Followers catching up from the store take turns, a few at a time: the database stays free for the
            # turns' own writes and their senders' reads.
            async with contextlib.nullcontext() if sender else self._follower_reads:
                rows = await self._store.stream_events_after(session_id, after_seq, before=before, limit=limit)
            return [Frame(r.seq, r.event, r.data, r.partial) for r in rows]

        waiter = functools.partial(self._core.live.wait_for_turn, session_id, tenant_id) if follow else None
        return Subscription(
            after, include_partial=include_partial, loader=load, turn=turn, sender=sender, next_turn=waiter
        )

    async def interrupt(self, tenant_id: str, session_id: uuid.UUID) -> Turn | None:
        """Abort the running turn, if any. Its stream ends with `error` (interrupted) and `done`."""
        session = await self._core.get(tenant_id, session_id)
        live = self._core.live.get(session.id)
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
        self._core.background.add(task)
        task.add_done_callback(self._core.background.discard)

    async def finish_turn(self, live: LiveSession) -> None:
        turn = live.turn
        if turn is None or turn.finished or live.sandbox is None:
            return
        await self._interrupt(live, turn)
        if turn.task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(turn.task), timeout=INTERRUPT_GRACE_S + 5)


def stream_rows(session_id: uuid.UUID, turn_id: str, frames: Sequence[Frame]) -> list[dict[str, Any]]:
    """A turn's frames as the rows the store keeps for replay (the parameters of its Core insert)."""
    now = utcnow()
    return [
        {
            "session_id": session_id,
            "seq": f.seq,
            "turn_id": turn_id,
            "event": f.event,
            "data": f.data_json,
            "partial": f.partial,
            "created_at": now,
        }
        for f in frames
    ]
