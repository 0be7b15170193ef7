"""A session's timeline: messages, events and stream frames, numbered without gaps (base.py reserves)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Unpack, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from .base import StoreBase
from .models import (
    Message,
    SessionEvent,
    SessionRow,
    StreamEvent,
    UsageEvent,
    utcnow,
)
from .sessions import SessionChanges

# Core statements, compiled once and cached by SQLAlchemy: a turn's rows go in as parameter lists, not ORM objects.
INSERT_MESSAGES = insert(cast(Table, Message.__table__))
INSERT_EVENTS = insert(cast(Table, SessionEvent.__table__))
INSERT_FRAMES = insert(cast(Table, StreamEvent.__table__))
INSERT_USAGE = insert(cast(Table, UsageEvent.__table__))


class TurnMessage(NamedTuple):
    """One SDK message of a turn, as stored: its role, its JSON, and the timeline events derived from it; or (no
    role) a timeline event alone, such as the turn's error."""

    role: str | None
    content: str
    events: Sequence[tuple[str, str | None]] = ()
    # A model call's usage rows (usage_rows), written with the turn rather than in a transaction of their own.
    usage: Sequence[dict[str, Any]] = ()

    @classmethod
    def event(cls, kind: str, data_json: str) -> TurnMessage:
        return cls(None, "", [(kind, data_json)])

    @classmethod
    def model_usage(cls, rows: Sequence[dict[str, Any]], timeline_json: str) -> TurnMessage:
        """A model call of the turn: its usage rows and its `lifecycle` (model_usage) timeline event."""
        return cls(None, "", [("lifecycle", timeline_json)], rows)


def usage_rows(
    tenant_id: str,
    session_id: uuid.UUID,
    agent_name: str,
    model: str,
    metrics: Sequence[tuple[str, float]],
    at: datetime,
) -> list[dict[str, Any]]:
    call = {
        "tenant_id": tenant_id,
        "session_id": session_id,
        "created_at": at,
        "agent_name": agent_name,
        "model": model,
    }
    return [{**call, "id": uuid.uuid4(), "event_type": kind, "value": value} for kind, value in metrics]


class TimelineQueries(StoreBase):
    async def append_messages(
        self,
        session: SessionRow,
        items: Sequence[tuple[str, str]],
        frames: Sequence[dict[str, Any]] = (),
        *,
        check_row: bool = False,
    ) -> list[Message]:
        """Append (role, JSON content) rows, returning them with their sequences; `frames` (a turn's first stream
        frames, rows of `stream_rows`) in the same transaction, so a turn whose message is stored always has a
        start in the stream. `check_row`: `session` was kept in memory, not read; StaleRow (nothing written) if
        the stored row differs from it."""

        def write(db: Session) -> list[dict[str, Any]]:
            with db.begin():
                last, _ = self._reserve_now(db, session.id, messages=len(items), expect=session if check_row else None)
                rows = _numbered(session, items, columns=MESSAGE_COLUMNS, after=last, at=utcnow())
                if rows:
                    db.execute(INSERT_MESSAGES, rows)
                if frames:
                    db.execute(INSERT_FRAMES, list(frames))
            return rows

        async with self._write_lock(session.id):
            rows = await self._run(write)
        return [Message(**row) for row in rows]

    async def write_turn(
        self,
        session: SessionRow,
        messages: Sequence[TurnMessage],
        frames: Sequence[dict[str, Any]],
        **changes: Unpack[SessionChanges],
    ) -> None:
        """What a turn produced since its last write, in one transaction of at most five statements: its SDK
        messages and their timeline events (numbered by the one reservation that also sets `changes`, the end
        of a turn's SDK session id and last activity), its model calls' usage rows, and its stream frames."""
        if not messages and not changes:
            await self.append_stream_events(frames)
            return
        events = [event for message in messages for event in message.events]
        usage = [row for message in messages for row in message.usage]
        stored = [m for m in messages if m.role is not None]

        def write(db: Session) -> None:
            with db.begin():
                last_message, last_event = self._reserve_now(
                    db, session.id, messages=len(stored), events=len(events), **changes
                )
                now = utcnow()
                if stored:
                    pairs = [(m.role, m.content) for m in stored]
                    db.execute(
                        INSERT_MESSAGES, _numbered(session, pairs, columns=MESSAGE_COLUMNS, after=last_message, at=now)
                    )
                if events:
                    db.execute(
                        INSERT_EVENTS, _numbered(session, events, columns=EVENT_COLUMNS, after=last_event, at=now)
                    )
                if usage:
                    db.execute(INSERT_USAGE, usage)
                if frames:
                    db.execute(INSERT_FRAMES, list(frames))

        async with self._write_lock(session.id):
            await self._run(write)

    async def record_message(
        self, session: SessionRow, role: str, content: str, events: Sequence[tuple[str, str | None]]
    ) -> None:
        """One SDK message and the timeline events derived from it, in one transaction."""
        await self.write_turn(session, [TurnMessage(role, content, events)], [])

    async def list_messages(
        self, tenant_id: str, session_id: uuid.UUID, *, after: int = 0, limit: int = 100
    ) -> Sequence[Message]:
        query = (
            select(Message)
            .where(Message.tenant_id == tenant_id, Message.session_id == session_id, Message.sequence > after)
            .order_by(Message.sequence)
            .limit(limit)
        )
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def append_events(self, session: SessionRow, items: Sequence[tuple[str, str | None]]) -> None:
        if not items:
            return

        def write(db: Session) -> None:
            with db.begin():
                _, last = self._reserve_now(db, session.id, events=len(items))
                db.execute(INSERT_EVENTS, _numbered(session, items, columns=EVENT_COLUMNS, after=last, at=utcnow()))

        async with self._write_lock(session.id):
            await self._run(write)

    async def list_events(
        self,
        tenant_id: str,
        session_id: uuid.UUID,
        *,
        after: int = 0,
        limit: int = 100,
        kind: str | None = None,
    ) -> Sequence[SessionEvent]:
        query = select(SessionEvent).where(
            SessionEvent.tenant_id == tenant_id,
            SessionEvent.session_id == session_id,
            SessionEvent.sequence > after,
        )
        if kind is not None:
            query = query.where(SessionEvent.type == kind)
        async with self.db() as db:
            return (await db.scalars(query.order_by(SessionEvent.sequence).limit(limit))).all()

    # -- Stream frames --------------------------------------------------------------------------------------------

    async def append_stream_events(self, rows: Sequence[dict[str, Any]]) -> None:
        """Stream frames, as rows of `sessions.turns.stream_rows`."""
        if not rows:
            return
        async with self.db() as db, db.begin():
            await db.execute(INSERT_FRAMES, list(rows))

    async def last_stream_seq(self, session_id: uuid.UUID) -> int:
        async with self.db() as db:
            return int(
                await db.scalar(select(func.max(StreamEvent.seq)).where(StreamEvent.session_id == session_id)) or 0
            )

    async def stream_events_after(
        self, session_id: uuid.UUID, after: int, *, before: int | None = None, limit: int = 500
    ) -> Sequence[StreamEvent]:
        query = select(StreamEvent).where(StreamEvent.session_id == session_id, StreamEvent.seq > after)
        if before is not None:
            query = query.where(StreamEvent.seq < before)
        async with self.db() as db:
            return (await db.scalars(query.order_by(StreamEvent.seq).limit(limit))).all()

    async def last_stream_event(self, session_id: uuid.UUID) -> StreamEvent | None:
        async with self.db() as db:
            last: StreamEvent | None = await db.scalar(
                select(StreamEvent)
                .where(StreamEvent.session_id == session_id)
                .order_by(StreamEvent.seq.desc())
                .limit(1)
            )
            return last

    async def last_turn_start(self, session_id: uuid.UUID) -> int | None:
        """The first frame's seq of the session's latest turn, or None if it never had one."""
        async with self.db() as db:
            last = await db.scalar(
                select(StreamEvent)
                .where(StreamEvent.session_id == session_id)
                .order_by(StreamEvent.seq.desc())
                .limit(1)
            )
            if last is None:
                return None
            first = await db.scalar(
                select(func.min(StreamEvent.seq)).where(
                    StreamEvent.session_id == session_id, StreamEvent.turn_id == last.turn_id
                )
            )
            return int(first) if first is not None else None


def _numbered(
    session: SessionRow,
    items: Sequence[tuple[str | None, str | None]],
    *,
    columns: tuple[str, str],
    after: int,
    at: datetime,
) -> list[dict[str, Any]]:
    """The Core insert parameters of a messages or session_events row for each pair in `items` (its values for
    `columns`), numbered on from the session's last sequence `after` (reserved by the caller)."""
    return [
        {
            "id": uuid.uuid4(),
            "session_id": session.id,
            "tenant_id": session.tenant_id,
            "sequence": after + i,
            "created_at": at,
            **dict(zip(columns, item, strict=True)),
        }
        for i, item in enumerate(items, start=1)
    ]


MESSAGE_COLUMNS = ("role", "content")
EVENT_COLUMNS = ("type", "data")
