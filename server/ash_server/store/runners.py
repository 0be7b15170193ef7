"""A coordinator's runners: registration, heartbeats, placement and moved sessions (cluster/registry.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text, update

from ..states import SessionStatus
from .base import StoreBase
from .models import (
    Runner,
    SessionRow,
)


class RunnerQueries(StoreBase):
    async def register_runner(self, runner: Runner) -> None:
        """Insert or replace a runner's row: live, not draining, counters from zero (a runner counts the
        placements it receives from its registration on)."""
        async with self.db() as db, db.begin():
            await db.merge(runner)

    async def runner_heartbeat(
        self, runner_id: str, *, sandboxes: int, received: int, stats: dict[str, Any], now: datetime
    ) -> bool:
        """Record a live runner's load. False when no live runner has this id (unknown, or declared dead): the
        runner registers again."""
        query = (
            update(Runner)
            .where(Runner.id == runner_id, Runner.status == "live")
            .values(sandboxes=sandboxes, received=received, stats=stats, last_heartbeat_at=now)
        )
        async with self.db() as db, db.begin():
            return bool((await db.execute(query)).rowcount)  # type: ignore[attr-defined]

    async def set_runner_draining(self, runner_id: str) -> bool:
        async with self.db() as db, db.begin():
            query = update(Runner).where(Runner.id == runner_id).values(draining=True)
            return bool((await db.execute(query)).rowcount)  # type: ignore[attr-defined]

    async def delete_runner(self, runner_id: str) -> bool:
        async with self.db() as db, db.begin():
            return bool((await db.execute(delete(Runner).where(Runner.id == runner_id))).rowcount)  # type: ignore[attr-defined]

    async def get_runner(self, runner_id: str) -> Runner | None:
        async with self.db() as db:
            runner: Runner | None = await db.get(Runner, runner_id)
            return runner

    async def list_runners(self) -> Sequence[Runner]:
        async with self.db() as db:
            return (await db.scalars(select(Runner).order_by(Runner.id))).all()

    async def place_session(
        self,
        heard_since: datetime,
        choose: Callable[[Sequence[Runner]], Runner | None],
        exclude: Sequence[str] = (),
    ) -> Runner | None:
        """Let `choose` pick among the live runners for a new session and count the placement on the chosen one,
        in one transaction that every coordinator serializes on (an advisory lock on PostgreSQL, the write lock on
        SQLite): a burst of creates spreads instead of landing where the last heartbeat said there was room
        (cluster/placement.py chooses)."""
        async with self.db() as db, db.begin():
            if self.engine.dialect.name == "postgresql":
                await db.execute(text("SELECT pg_advisory_xact_lock(4242000007)"))
            else:
                await db.execute(update(Runner).where(Runner.id == "").values(placed=Runner.placed))
            query = select(Runner).where(
                Runner.status == "live", Runner.draining.is_(False), Runner.last_heartbeat_at >= heard_since
            )
            if exclude:
                query = query.where(Runner.id.not_in(exclude))
            chosen = choose((await db.scalars(query)).all())
            if chosen is None:
                return None
            db.expunge(chosen)  # a plain value for the caller: the count is changed by the statement only
            await db.execute(update(Runner).where(Runner.id == chosen.id).values(placed=Runner.placed + 1))
            return chosen

    async def session_and_runner(
        self, tenant_id: str, session_id: uuid.UUID
    ) -> tuple[SessionRow, Runner | None] | None:
        """A session and the runner that runs it, in one query (a coordinator's per-request routing lookup)."""
        query = (
            select(SessionRow, Runner)
            .outerjoin(Runner, Runner.id == SessionRow.runner_id)
            .where(SessionRow.tenant_id == tenant_id, SessionRow.id == session_id)
        )
        async with self.db() as db:
            row = (await db.execute(query)).first()
            return None if row is None else (row[0], row[1])

    async def unplace(self, runner_id: str) -> None:
        """A placement that never reached its runner (the call failed before it was sent) is not load."""
        async with self.db() as db, db.begin():
            await db.execute(update(Runner).where(Runner.id == runner_id).values(placed=Runner.placed - 1))

    async def mark_dead_runners(self, silent_since: datetime) -> list[str]:
        """Declare dead the live runners not heard from since `silent_since`; returns their ids (each is returned
        to exactly one caller, however many coordinators sweep at once)."""
        async with self.db() as db, db.begin():
            rows = await db.execute(
                update(Runner)
                .where(Runner.status == "live", Runner.last_heartbeat_at < silent_since)
                .values(status="dead")
                .returning(Runner.id)
            )
            return [str(r[0]) for r in rows.all()]

    async def sessions_on_runner(self, runner_id: str, statuses: Sequence[str]) -> Sequence[SessionRow]:
        query = select(SessionRow).where(SessionRow.runner_id == runner_id, SessionRow.status.in_(statuses))
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def moved_sessions(self, session_ids: Sequence[uuid.UUID], runner_id: str) -> list[uuid.UUID]:
        """Which of these sessions another runner runs now (or that ended): a runner drops its sandboxes of them."""
        if not session_ids:
            return []
        query = select(SessionRow.id).where(
            SessionRow.id.in_(session_ids),
            (SessionRow.runner_id != runner_id) | (SessionRow.status == SessionStatus.ENDED),
        )
        async with self.db() as db:
            return [r for r in (await db.scalars(query)).all()]

    async def move_session(self, session_id: uuid.UUID, from_runner: str | None, to_runner: str) -> bool:
        """Hand a session whose runner is gone to another one, if nobody has since (compare and set)."""
        where = SessionRow.runner_id.is_(None) if from_runner is None else SessionRow.runner_id == from_runner
        async with self.db() as db, db.begin():
            query = (
                update(SessionRow).where(SessionRow.id == session_id, where).values(runner_id=to_runner, sandbox_id="")
            )
            return bool((await db.execute(query)).rowcount)  # type: ignore[attr-defined]
