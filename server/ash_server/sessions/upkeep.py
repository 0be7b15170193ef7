"""Upkeep: what keeps a server's sessions in order without a client asking: eviction when the pool needs room,
the idle and retention sweeps, dropping sessions moved to another runner, recovery after a restart, and the drain
at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

from ..errors import AshError
from ..states import SessionStatus
from ..store.models import SessionRow, utcnow
from .core import SessionCore, SessionPart
from .events import dumps
from .turn import Frame
from .turns import TurnRunner, stream_rows

log = logging.getLogger(__name__)
CUT_OFF_MESSAGE = "the turn was cut off: the server stopped while it ran; send the message again"

# At shutdown, how long running turns may go on before they are interrupted (uvicorn has already waited for the
# streams of the turns whose clients are still there).
DRAIN_TURNS_S = 10.0
# A session folder without a session row is left alone this long (a warm sandbox's may be in the making).
ORPHAN_FOLDER_AGE_S = 3600.0


class Upkeep(SessionPart):
    """Eviction, sweeps, recovery and shutdown."""

    def __init__(self, core: SessionCore, turns: TurnRunner, *, hot_window_s: float, retention_s: float) -> None:
        super().__init__(core)
        self._turns = turns
        self._hot_window_s = hot_window_s
        self._retention_s = retention_s

    async def sweep_idle(self) -> int:
        """Stop sandboxes idle longer than the hot window (ASH_HOT_WINDOW_MS). Their sessions keep their status
        and continue on a new sandbox (cold path) with their next message or resume."""
        return await self._pool.sweep_idle(self._hot_window_s, self._core.evict)

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
        interval = max(1.0, min(60.0, self._hot_window_s / 4))
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

    async def drop_moved(self) -> int:
        """Drop this server's sandboxes of sessions a coordinator has moved to another runner (this runner was
        declared dead meanwhile) or that ended: their files here are stale, and two copies must never run."""
        held = [sid for sid, live in self._core.live.items() if live.sandbox is not None or live.turn is not None]
        moved = await self._store.moved_sessions(held, self._core.server_id)
        for session_id in moved:
            live = self._core.live.get(session_id)
            if live is None:
                continue
            async with live.lock:
                log.warning("session %s moved to another runner; dropping its sandbox here", session_id)
                await self._turns.finish_turn(live)
                await self._core.drop_sandbox(live, cold=False)
            self._core.live.forget(session_id)
        return len(moved)

    # -- Start-up and shutdown --------------------------------------------------------------------------------

    async def recover(self) -> int:
        """After a restart no sandbox of this server exists: what its predecessor left is killed (the pool), and
        the sessions it was running are paused, resumable on the cold path. Other servers' sessions are theirs."""
        await self._pool.recover()
        recovered = await self._store.sessions_with_status(
            [SessionStatus.ACTIVE, SessionStatus.STARTING], runner_id=self._core.server_id
        )
        for session in recovered:
            await self._end_cut_off_turn(session)
            await self._core.set(session, status=SessionStatus.PAUSED, sandbox_id="")
            await self._core.event(session, "lifecycle", {"action": "paused", "reason": "server restarted"})
        return len(recovered)

    async def _end_cut_off_turn(self, session: SessionRow) -> None:
        """A turn the crash cut off has no end in the store: give its replay the `error` and `done` every turn
        ends with, so a client re-attaching (or reading it later) sees it ended rather than waiting for ever."""
        last = await self._store.last_stream_event(session.id)
        if last is None or last.event == "done":
            return
        ending = [
            Frame(last.seq + 1, "error", dumps({"error": CUT_OFF_MESSAGE})),
            Frame(last.seq + 2, "done", dumps({"sessionId": str(session.id)})),
        ]
        await self._store.append_stream_events(stream_rows(session.id, last.turn_id, ending))
        await self._core.event(session, "error", {"error": CUT_OFF_MESSAGE, "code": "cut_off"})
        log.warning("session %s: its turn %s was cut off by the server stopping; ended it", session.id, last.turn_id)

    async def shutdown(self) -> None:
        """Drain: let running turns finish (for a while), interrupt the rest, persist every session that has a
        sandbox here, then stop everything. Sessions that were active are left paused, resumable anywhere."""
        turns = [live.turn.task for live in self._core.live.values() if live.turn is not None and live.turn.task]
        pending = [t for t in turns if t is not None and not t.done()]
        if pending:
            log.info("waiting up to %.0f s for %d running turn(s)", DRAIN_TURNS_S, len(pending))
            await asyncio.wait(pending, timeout=DRAIN_TURNS_S)
        for live in list(self._core.live.values()):
            await self._turns.finish_turn(live)
        for session_id, live in list(self._core.live.items()):
            if live.sandbox is None:
                continue
            async with live.lock:
                session = await self._store.get_session(live.tenant_id, session_id)
                if session is None or live.sandbox is None:
                    continue
                if not self._core.runs_here(session):
                    await self._core.drop_sandbox(live, cold=False)  # another server runs it now: not ours to persist
                    continue
                try:
                    await self._core.persist(session)
                except AshError as exc:
                    log.warning("session %s: snapshot at shutdown failed: %s", session_id, exc.message)
                await self._core.drop_sandbox(live, cold=True)
                if session.status in (SessionStatus.ACTIVE, SessionStatus.STARTING):
                    await self._core.set(session, status=SessionStatus.PAUSED, sandbox_id="")
                    await self._core.event(session, "lifecycle", {"action": "paused", "reason": "server shutting down"})
                else:
                    await self._core.set(session, sandbox_id="")
        await self._snapshots.close()
        await self._pool.close()
        await self._sandboxes.stop_all()
