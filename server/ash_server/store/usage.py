"""Usage records of model calls and their aggregates."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select

from .base import StoreBase
from .models import (
    UsageEvent,
    utcnow,
)
from .timeline import INSERT_EVENTS, INSERT_USAGE, usage_rows


class UsageQueries(StoreBase):
    async def record_usage(
        self,
        tenant_id: str,
        session_id: uuid.UUID,
        agent_name: str,
        model: str,
        metrics: Sequence[tuple[str, float]],
        timeline: str,
    ) -> None:
        """One model call's usage rows and its timeline event, in one transaction. The event is a `lifecycle` one
        (`action: model_usage`): the reference's event types have no `usage`, and its clients reject unknown ones."""
        now = utcnow()
        owner = {"tenant_id": tenant_id, "session_id": session_id, "created_at": now}
        async with self._write_lock(session_id), self.db() as db, db.begin():
            _, last = await self._reserve(db, session_id, events=1)
            if metrics:
                await db.execute(INSERT_USAGE, usage_rows(tenant_id, session_id, agent_name, model, metrics, now))
            event = {**owner, "id": uuid.uuid4(), "type": "lifecycle", "data": timeline, "sequence": last + 1}
            await db.execute(INSERT_EVENTS, [event])

    async def list_usage(
        self, tenant_id: str, where: UsageFilter | None = None, *, limit: int = 100
    ) -> Sequence[UsageEvent]:
        query = (where or UsageFilter()).apply(select(UsageEvent), tenant_id)
        async with self.db() as db:
            return (await db.scalars(query.order_by(UsageEvent.created_at, UsageEvent.id).limit(limit))).all()

    async def usage_totals(self, tenant_id: str, where: UsageFilter | None = None) -> list[tuple[str, str, float]]:
        """(model, event type, sum of values) over the matching usage rows."""
        query = (where or UsageFilter()).apply(
            select(UsageEvent.model, UsageEvent.event_type, func.sum(UsageEvent.value)), tenant_id
        )
        async with self.db() as db:
            rows = (await db.execute(query.group_by(UsageEvent.model, UsageEvent.event_type))).all()
        return [(str(m), str(t), float(v or 0)) for m, t, v in rows]


Query = TypeVar("Query", bound="Select[*tuple[Any, ...]]")  # a string: Select is variadic from SQLAlchemy 2.1 on


@dataclass(frozen=True)
class UsageFilter:
    """Which of a tenant's usage rows a query covers; None matches all."""

    session_id: uuid.UUID | None = None
    agent_name: str | None = None
    after: datetime | None = None
    before: datetime | None = None

    def apply(self, query: Query, tenant_id: str) -> Query:
        query = query.where(UsageEvent.tenant_id == tenant_id)
        if self.session_id is not None:
            query = query.where(UsageEvent.session_id == self.session_id)
        if self.agent_name is not None:
            query = query.where(UsageEvent.agent_name == self.agent_name)
        if self.after is not None:
            query = query.where(UsageEvent.created_at > self.after)
        if self.before is not None:
            query = query.where(UsageEvent.created_at < self.before)
        return query
