"""What exists of a session in this process: its sandbox, its running turn, its lock. Kept only while it matters.

An entry lives while its session has a sandbox here, runs a turn, or a caller is using it (holding or waiting for
its lock, following it for its next turn); after that it is dropped, so the map is bounded by the pool's sandboxes
and the requests in flight, not by every session this process ever touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from ..sandbox.sandbox import Sandbox
from ..store.models import SessionRow
from .turn import Turn


@dataclass
class LiveSession:
    tenant_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sandbox: Sandbox | None = None
    turn: Turn | None = None
    # The next SSE id (stream frame sequence) of this session; loaded from the store at its first turn here.
    next_seq: int | None = None
    turn_started: asyncio.Event = field(default_factory=asyncio.Event)
    # Callers using the entry right now (see LiveSessions.using): it is not dropped under them.
    users: int = 0
    # The session's row as this process last read or wrote it. A message to a session whose sandbox is alive
    # here takes it instead of reading the store, and its start transaction checks it (store/base.py, StaleRow).
    row: SessionRow | None = None

    @property
    def running(self) -> bool:
        return self.turn is not None and not self.turn.finished

    @property
    def idle(self) -> bool:
        """Nothing here would be lost by dropping the entry (the next turn reloads `next_seq` from the store)."""
        no_sandbox = self.sandbox is None or not self.sandbox.alive  # a dead one: the pool has cleaned it up
        return self.users == 0 and no_sandbox and not self.running

    async def wait_for_turn(self, limit_s: float | None) -> Turn | None:
        """The running turn, or the next one to start within `limit_s` seconds."""
        started = self.turn_started
        if self.running:
            return self.turn
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), limit_s)
        return self.turn if self.running else None


class LiveSessions:
    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, LiveSession] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: uuid.UUID) -> LiveSession | None:
        return self._entries.get(session_id)

    def items(self) -> list[tuple[uuid.UUID, LiveSession]]:
        return list(self._entries.items())

    def values(self) -> list[LiveSession]:
        return list(self._entries.values())

    def entry(self, session_id: uuid.UUID, tenant_id: str) -> LiveSession:
        """The session's entry, made if there is none. A caller that keeps it beyond a step uses `using`."""
        live = self._entries.get(session_id)
        if live is None:
            live = self._entries[session_id] = LiveSession(tenant_id)
        return live

    @contextlib.asynccontextmanager
    async def using(self, session_id: uuid.UUID, tenant_id: str) -> AsyncIterator[LiveSession]:
        live = self.entry(session_id, tenant_id)
        live.users += 1
        try:
            yield live
        finally:
            live.users -= 1
            self.forget_if_idle(session_id)

    @contextlib.asynccontextmanager
    async def locked(self, session_id: uuid.UUID, tenant_id: str) -> AsyncIterator[LiveSession]:
        """The entry with its lock held: one request changes a session at a time."""
        async with self.using(session_id, tenant_id) as live, live.lock:
            yield live

    async def wait_for_turn(self, session_id: uuid.UUID, tenant_id: str, limit_s: float | None) -> Turn | None:
        """For a follower: the session's running turn, or its next within `limit_s` (the entry is kept meanwhile,
        so the follower waits on the entry the next turn starts on)."""
        async with self.using(session_id, tenant_id) as live:
            return await live.wait_for_turn(limit_s)

    def forget_if_idle(self, session_id: uuid.UUID) -> None:
        live = self._entries.get(session_id)
        if live is not None and live.idle:
            del self._entries[session_id]

    def forget(self, session_id: uuid.UUID) -> None:
        """Drop the entry whatever it holds (the session ended or moved: its sandbox is gone already)."""
        live = self._entries.get(session_id)
        if live is not None and live.users == 0:
            del self._entries[session_id]
        elif live is not None:
            live.sandbox, live.turn = None, None  # the last user's exit drops it

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(list(self._entries))
