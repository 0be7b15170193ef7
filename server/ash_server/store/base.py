"""What every part of the store stands on: the engine and its sessions, per-session write turns, and the reservation
of a session's message and event sequences (shared by the timeline and usage records)."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..errors import NotFound
from .database import session_factory
from .models import SessionRow


class StoreBase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        # Writers of one session's messages and events (its turn, the model gateway's usage records) take turns in
        # this process before they take the session row's lock in the database: correctness comes from the row
        # lock (see _reserve), this only keeps them from queueing inside the database.
        self._write_locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = weakref.WeakValueDictionary()

    def db(self) -> AsyncSession:
        return self._sessions()

    def _write_lock(self, session_id: uuid.UUID) -> asyncio.Lock:
        lock = self._write_locks.get(session_id)
        if lock is None:
            lock = self._write_locks[session_id] = asyncio.Lock()
        return lock

    async def close(self) -> None:
        await self.engine.dispose()

    # Sequences are per session, 1, 2, 3... without gaps. A writer reserves its numbers by incrementing the
    # session row's counters as the first statement of its inserting transaction (UPDATE ... RETURNING): the row
    # stays locked until the transaction ends, so writers in any number of processes take turns, and a writer that
    # rolls back gives its numbers back. On SQLite the same UPDATE takes the database's write lock. The unique
    # constraints on (session_id, sequence) are the last line: a writer that bypassed this fails loudly.

    async def _reserve(
        self, db: AsyncSession, session_id: uuid.UUID, *, messages: int = 0, events: int = 0, **changes: Any
    ) -> tuple[int, int]:
        """Reserve `messages` message and `events` event sequences; returns the last sequences before them.
        `changes`: other columns of the session row set by the same statement (a turn's end)."""
        statement = (
            update(SessionRow)
            .where(SessionRow.id == session_id)
            .values(
                last_message_seq=SessionRow.last_message_seq + messages,
                last_event_seq=SessionRow.last_event_seq + events,
                **changes,
            )
            .returning(SessionRow.last_message_seq, SessionRow.last_event_seq)
            .execution_options(synchronize_session=False)
        )
        row = (await db.execute(statement)).one_or_none()
        if row is None:
            raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
        return int(row[0]) - messages, int(row[1]) - events
