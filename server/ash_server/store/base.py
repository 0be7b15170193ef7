"""What every part of the store stands on: the engine and its sessions, per-session write turns, and the reservation
of a session's message and event sequences (shared by the timeline and usage records)."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, Integer, Row, Select, Table, Update, bindparam, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from ..errors import NotFound
from .database import session_factory
from .models import Base, SessionRow
from .one_hop import OneHop

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=Base)


class StoreBase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        # SQLite files: the hot path's transactions in one thread hop each (one_hop.py); None on PostgreSQL.
        self.hop = OneHop.beside(engine)
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

    async def _run(self, work: Callable[[Session], T]) -> T:
        """`work` on a synchronous session: in one thread hop on SQLite (one_hop.py), else on the async engine's
        (greenlet-adapted, as every async statement is). For the few calls every request or turn makes."""
        if self.hop is not None:
            return await self.hop.run(work)
        async with self.db() as db:
            return await db.run_sync(work)

    async def _one(self, model: type[ModelT], query: Select[Any], **params: Any) -> ModelT | None:
        """The row of `model`'s table that `query` (a select of that table, built once, with bound `params`)
        picks, as a plain (never attached) `model`: the ORM's loading (identity map, instance state) and a
        statement built per call cost as much again as the rest of the read (0.46 against 0.24 ms of CPU per
        SQLite read, measured). For the reads every request or turn makes."""

        def read(db: Session) -> ModelT | None:
            row = db.connection().execute(query, params).one_or_none()
            return None if row is None else model(**row._mapping)

        return await self._run(read)

    def sync_engines(self) -> list[Engine]:
        """Every engine that sends SQL (what statement counters listen to)."""
        return [self.engine.sync_engine, *([self.hop.engine] if self.hop is not None else [])]

    async def close(self) -> None:
        if self.hop is not None:
            await self.hop.close()
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
        statement, params = _reservation(session_id, messages, events, changes)
        row = (await db.execute(statement, params)).one_or_none()
        return _reserved(row, session_id, messages, events)

    @staticmethod
    def _reserve_now(
        db: Session,
        session_id: uuid.UUID,
        *,
        messages: int = 0,
        events: int = 0,
        expect: SessionRow | None = None,
        **changes: Any,
    ) -> tuple[int, int]:
        """`_reserve` in a synchronous transaction (one_hop.py). `expect`: a copy of the row kept in memory, which
        the reservation reads back and compares (StaleRow if it changed): what a cached row was used for is then
        as good as read in this transaction."""
        statement, params = _reservation(session_id, messages, events, changes, checked=expect is not None)
        row = db.execute(statement, params).one_or_none()
        if expect is not None and row is not None:
            stored = row._mapping
            changed = [name for name in CHECKED_COLUMNS if stored[name] != getattr(expect, name)]
            if changed:
                raise StaleRow(f"session {session_id} changed in the store: {', '.join(changed)}")
        return _reserved(row, session_id, messages, events)


# The session row's UPDATEs (reservations here, plain updates in sessions.py), one per set of columns changed,
# each built once: building the UPDATE per call (and running it through the ORM) cost more than the rest of a
# turn's start transaction.
_RESERVATIONS: dict[tuple[tuple[str, ...], bool], Update] = {}
SESSIONS = cast(Table, SessionRow.__table__)
# What a turn acts on from its session's row. A turn that took the row from memory (sessions/live.py) instead of
# reading it has its start transaction read these back (with the reservation, no statement more) and compare.
CHECKED_COLUMNS = (
    "tenant_id",
    "status",
    "runner_id",
    "agent_name",
    "agent_version",
    "sandbox_id",
    "sdk_session_id",
    "config",
)


class StaleRow(Exception):
    """A session row kept in memory no longer matches the store: another writer changed it. The transaction that
    found it out rolls back; the caller reads the row again."""


def session_changes(changes: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The columns `changes` sets (the key of a built statement) and their bound values. (Bound names are
    prefixed: SQLAlchemy keeps a column's own name for its SET clause.)"""
    return tuple(sorted(changes)), {f"set_{name}": value for name, value in changes.items()}


def session_set_clause(changed: tuple[str, ...]) -> dict[str, Any]:
    """The SET clause of `changed` columns, bound as `session_changes` names them."""
    return {name: bindparam(f"set_{name}", type_=SESSIONS.c[name].type) for name in changed}


def insert_values(row: Base) -> dict[str, Any]:
    """The column values of a new `row` for a Core INSERT, its Python-side defaults (ids, timestamps, counters)
    filled in on the object too, as an ORM flush would: what was never set takes the column's default, what was
    set (None included) is kept."""
    table = cast(Table, row.__table__)
    given = vars(row)
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.key in given:
            values[column.key] = given[column.key]
            continue
        default = column.default
        value = None
        if default is not None and default.is_scalar:
            value = default.arg  # type: ignore[attr-defined]
        elif default is not None and default.is_callable:
            value = default.arg(None)  # type: ignore[attr-defined]
        setattr(row, column.key, value)
        values[column.key] = value
    return values


def _reservation(
    session_id: uuid.UUID, messages: int, events: int, changes: dict[str, Any], *, checked: bool = False
) -> tuple[Update, dict[str, Any]]:
    changed, params = session_changes(changes)
    statement = _RESERVATIONS.get((changed, checked))
    if statement is None:
        returned = [SESSIONS.c.last_message_seq, SESSIONS.c.last_event_seq]
        if checked:
            returned += [SESSIONS.c[name] for name in CHECKED_COLUMNS]
        statement = _RESERVATIONS[changed, checked] = (
            update(SESSIONS)
            .where(SESSIONS.c.id == bindparam("reserve_session_id"))
            .values(
                last_message_seq=SESSIONS.c.last_message_seq + bindparam("reserve_messages", type_=Integer()),
                last_event_seq=SESSIONS.c.last_event_seq + bindparam("reserve_events", type_=Integer()),
                **session_set_clause(changed),
            )
            .returning(*returned)
        )
    params.update(reserve_session_id=session_id, reserve_messages=messages, reserve_events=events)
    return statement, params


def _reserved(row: Row[Any] | None, session_id: uuid.UUID, messages: int, events: int) -> tuple[int, int]:
    if row is None:
        raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
    counters = row._mapping  # a documented name despite its underscore
    return int(counters["last_message_seq"]) - messages, int(counters["last_event_seq"]) - events
