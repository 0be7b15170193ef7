"""Sessions: their rows, lookups and filters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import ColumnElement, func, select, update

from ..states import SessionStatus
from .base import StoreBase
from .models import (
    Session,
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
    async def add_session(self, session: Session) -> Session:
        async with self.db() as db, db.begin():
            db.add(session)
        return session

    async def get_session(self, tenant_id: str, session_id: uuid.UUID) -> Session | None:
        async with self.db() as db:
            session: Session | None = await db.scalar(
                select(Session).where(Session.tenant_id == tenant_id, Session.id == session_id)
            )
            return session

    async def list_sessions(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[Session]:
        query = select(Session).where(*_session_filter(tenant_id, agent, status))
        query = query.order_by(Session.created_at.desc(), Session.id).limit(limit).offset(offset)
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def count_matching_sessions(self, tenant_id: str, *, agent: str | None, status: str | None) -> int:
        """How many sessions `list_sessions` would page through (the `total` of `includeTotal=true`)."""
        query = select(func.count()).select_from(Session).where(*_session_filter(tenant_id, agent, status))
        async with self.db() as db:
            return int((await db.execute(query)).scalar_one())

    async def sessions_with_status(self, statuses: Sequence[str], *, runner_id: str | None = None) -> Sequence[Session]:
        """All tenants: used only by start-up recovery and shutdown, never by a request. With `runner_id`, only the
        sessions that server ran last (or that no server has claimed)."""
        query = select(Session).where(Session.status.in_(statuses))
        if runner_id is not None:
            query = query.where((Session.runner_id == runner_id) | Session.runner_id.is_(None))
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def session_states(self, session_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, datetime | None]]:
        """(status, ended_at) of each of these sessions that exists, any tenant (the retention sweep)."""
        if not session_ids:
            return {}
        query = select(Session.id, Session.status, Session.ended_at).where(Session.id.in_(session_ids))
        async with self.db() as db:
            return {row[0]: (row[1], row[2]) for row in (await db.execute(query)).all()}

    async def count_sessions(self, statuses: Sequence[str]) -> int:
        async with self.db() as db:
            query = select(func.count()).select_from(Session).where(Session.status.in_(statuses))
            return int(await db.scalar(query) or 0)

    async def session_counts(self, tenant_id: str) -> list[tuple[str, str, int]]:
        """(agent name, status, number of sessions) of a tenant: the dashboard's totals, in one query."""
        query = (
            select(Session.agent_name, Session.status, func.count())
            .where(Session.tenant_id == tenant_id)
            .group_by(Session.agent_name, Session.status)
        )
        async with self.db() as db:
            return [(str(agent), str(status), int(n)) for agent, status, n in (await db.execute(query)).all()]

    async def update_session(self, session_id: uuid.UUID, **values: Unpack[SessionChanges]) -> None:
        async with self.db() as db, db.begin():
            await db.execute(update(Session).where(Session.id == session_id).values(**values))


def _session_filter(tenant_id: str, agent: str | None, status: str | None) -> list[ColumnElement[bool]]:
    where = [Session.tenant_id == tenant_id]
    if agent is not None:
        where.append(Session.agent_name == agent)
    if status is not None:
        where.append(Session.status == status)
    return where
