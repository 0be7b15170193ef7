"""Sessions: their rows, lookups and filters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import ColumnElement, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from ..states import SessionStatus
from .base import SESSIONS, StoreBase, session_changes, session_set_clause
from .models import (
    SessionRow,
)

# Built once (see StoreBase._one): every request about a session runs it.
SESSION_BY_ID = select(SessionRow.__table__).where(
    SessionRow.tenant_id == bindparam("tenant_id"), SessionRow.id == bindparam("session_id")
)


class SessionChanges(TypedDict, total=False):
    """What of a session's row changes after it is created (the rest is fixed at create)."""

    status: SessionStatus
    sandbox_id: str
    sdk_session_id: str | None
    runner_id: str | None
    config: dict[str, Any]
    last_active_at: datetime
    ended_at: datetime


class SessionQueries(StoreBase):
    async def add_session(self, session: SessionRow) -> SessionRow:
        async with self.db() as db, db.begin():
            db.add(session)
        return session

    async def get_session(self, tenant_id: str, session_id: uuid.UUID) -> SessionRow | None:
        # Every request about a session reads it.
        return await self._one(SessionRow, SESSION_BY_ID, tenant_id=tenant_id, session_id=session_id)

    async def list_sessions(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[SessionRow]:
        query = select(SessionRow).where(*_session_filter(tenant_id, agent, status))
        query = query.order_by(SessionRow.created_at.desc(), SessionRow.id).limit(limit).offset(offset)
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def count_matching_sessions(self, tenant_id: str, *, agent: str | None, status: str | None) -> int:
        """How many sessions `list_sessions` would page through (the `total` of `includeTotal=true`)."""
        query = select(func.count()).select_from(SessionRow).where(*_session_filter(tenant_id, agent, status))
        async with self.db() as db:
            return int((await db.execute(query)).scalar_one())

    async def sessions_with_status(
        self, statuses: Sequence[str], *, runner_id: str | None = None
    ) -> Sequence[SessionRow]:
        """All tenants: used only by start-up recovery and shutdown, never by a request. With `runner_id`, only the
        sessions that server ran last (or that no server has claimed)."""
        query = select(SessionRow).where(SessionRow.status.in_(statuses))
        if runner_id is not None:
            query = query.where((SessionRow.runner_id == runner_id) | SessionRow.runner_id.is_(None))
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def session_states(self, session_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, datetime | None]]:
        """(status, ended_at) of each of these sessions that exists, any tenant (the retention sweep)."""
        if not session_ids:
            return {}
        query = select(SessionRow.id, SessionRow.status, SessionRow.ended_at).where(SessionRow.id.in_(session_ids))
        async with self.db() as db:
            return {row[0]: (row[1], row[2]) for row in (await db.execute(query)).all()}

    async def count_sessions(self, statuses: Sequence[str]) -> int:
        async with self.db() as db:
            query = select(func.count()).select_from(SessionRow).where(SessionRow.status.in_(statuses))
            return int(await db.scalar(query) or 0)

    async def session_counts(self, tenant_id: str) -> list[tuple[str, str, int]]:
        """(agent name, status, number of sessions) of a tenant: the dashboard's totals, in one query."""
        query = (
            select(SessionRow.agent_name, SessionRow.status, func.count())
            .where(SessionRow.tenant_id == tenant_id)
            .group_by(SessionRow.agent_name, SessionRow.status)
        )
        async with self.db() as db:
            return [(str(agent), str(status), int(n)) for agent, status, n in (await db.execute(query)).all()]

    async def update_session(self, session_id: uuid.UUID, **values: Unpack[SessionChanges]) -> None:
        if not values:
            return
        changed, params = session_changes(dict(values))
        statement = _session_update(changed)
        params["update_session_id"] = session_id

        def write(db: Session) -> None:
            with db.begin():
                db.execute(statement, params)

        await self._run(write)


# One UPDATE per set of columns changed, built once (as base.py's reservations).
_UPDATES: dict[tuple[str, ...], Update] = {}


def _session_update(changed: tuple[str, ...]) -> Update:
    statement = _UPDATES.get(changed)
    if statement is None:
        statement = _UPDATES[changed] = (
            update(SESSIONS).where(SESSIONS.c.id == bindparam("update_session_id")).values(session_set_clause(changed))
        )
    return statement


def _session_filter(tenant_id: str, agent: str | None, status: str | None) -> list[ColumnElement[bool]]:
    where = [SessionRow.tenant_id == tenant_id]
    if agent is not None:
        where.append(SessionRow.agent_name == agent)
    if status is not None:
        where.append(SessionRow.status == status)
    return where
