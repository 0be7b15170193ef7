"""Sandboxes (the pool's rows) and snapshots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TypedDict, Unpack, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from ..states import SandboxState, SessionStatus
from .base import StoreBase, insert_values
from .models import (
    Agent,
    SandboxRow,
    SessionRow,
    Snapshot,
    utcnow,
)
from .timeline import EVENT_COLUMNS, INSERT_EVENTS, _numbered


class SandboxChanges(TypedDict, total=False):
    """What of a sandbox's row changes after it is recorded (the pool's writes)."""

    state: SandboxState
    pid: int | None
    server_id: str
    last_used_at: datetime


INSERT_SESSION = insert(cast(Table, SessionRow.__table__))
CLAIM_SANDBOX = (
    update(cast(Table, SandboxRow.__table__))
    .where(SandboxRow.__table__.c.id == bindparam("claim_sandbox_id"))
    .values(state=SandboxState.WAITING)
)


class SandboxQueries(StoreBase):
    async def save_sandbox(self, sandbox: SandboxRow) -> None:
        async with self.db() as db, db.begin():
            await db.merge(sandbox)

    async def delete_sandbox(self, sandbox_id: str) -> None:
        async with self.db() as db, db.begin():
            await db.execute(delete(SandboxRow).where(SandboxRow.id == sandbox_id))

    async def list_sandboxes(self, server_id: str | None = None) -> Sequence[SandboxRow]:
        """Every pool row, or those of one server (and rows written before servers were told apart)."""
        query = select(SandboxRow)
        if server_id is not None:
            query = query.where((SandboxRow.server_id == server_id) | SandboxRow.server_id.is_(None))
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def add_session_on_sandbox(
        self, session: SessionRow, sandbox_id: str, events: Sequence[tuple[str, str | None]] = ()
    ) -> SessionRow:
        """Insert a session that claims a warm sandbox, with its first timeline `events`, and mark that sandbox
        `waiting` for it: one transaction."""
        session.last_event_seq = len(events)

        # A Core insert, not the ORM's unit of work (add, flush, expunge): half the CPU of the warm create's
        # transaction. The object comes back plain, never attached, as StoreBase._one's reads do.
        values = insert_values(session)

        def write(db: Session) -> None:
            with db.begin():
                db.execute(INSERT_SESSION, [values])
                if events:
                    rows = _numbered(session, events, columns=EVENT_COLUMNS, after=0, at=utcnow())
                    db.execute(INSERT_EVENTS, rows)
                db.execute(
                    CLAIM_SANDBOX,
                    {"claim_sandbox_id": sandbox_id, "session_id": session.id, "last_used_at": utcnow()},
                )

        await self._run(write)
        return session

    async def update_sandbox(self, sandbox_id: str, **values: Unpack[SandboxChanges]) -> None:
        async with self.db() as db, db.begin():
            await db.execute(update(SandboxRow).where(SandboxRow.id == sandbox_id).values(**values))

    async def delete_cold_sandboxes(self, session_id: uuid.UUID) -> None:
        """The session has a sandbox again (or has ended): its cold rows, on any server, no longer stand for it."""
        async with self.db() as db, db.begin():
            await db.execute(
                delete(SandboxRow).where(SandboxRow.session_id == session_id, SandboxRow.state == SandboxState.COLD)
            )

    async def live_sandbox_on(self, session_id: uuid.UUID, server_id: str) -> SandboxRow | None:
        """A live (waiting or running) sandbox of this session on that server, if any."""
        query = select(SandboxRow).where(
            SandboxRow.session_id == session_id,
            SandboxRow.state.in_((SandboxState.WAITING, SandboxState.RUNNING)),
            SandboxRow.server_id == server_id,
        )
        async with self.db() as db:
            row: SandboxRow | None = await db.scalar(query.limit(1))
            return row

    async def count_sandboxes(self, server_id: str, state: str) -> int:
        query = (
            select(func.count())
            .select_from(SandboxRow)
            .where(SandboxRow.server_id == server_id, SandboxRow.state == state)
        )
        async with self.db() as db:
            return int(await db.scalar(query) or 0)

    async def all_agents(self) -> Sequence[Agent]:
        """Every tenant's agents: what the warm pool keeps sandboxes for. Never used by a request."""
        async with self.db() as db:
            return (await db.scalars(select(Agent).order_by(Agent.tenant_id, Agent.name))).all()

    async def agents_used_since(self, since: datetime) -> dict[tuple[str, str], datetime]:
        """(tenant, agent) → its newest session's creation, for the agents given a session since `since`: what
        the warm pool calls recently used."""
        newest = func.max(SessionRow.created_at)
        query = (
            select(SessionRow.tenant_id, SessionRow.agent_name, newest)
            .where(SessionRow.created_at >= since)
            .group_by(SessionRow.tenant_id, SessionRow.agent_name)
        )
        async with self.db() as db:
            return {(tenant, name): at for tenant, name, at in (await db.execute(query)).all()}

    # -- Snapshots ------------------------------------------------------------------------------------------

    async def latest_snapshot(self, session_id: uuid.UUID) -> Snapshot | None:
        query = select(Snapshot).where(Snapshot.session_id == session_id).order_by(Snapshot.generation.desc())
        async with self.db() as db:
            row: Snapshot | None = await db.scalar(query.limit(1))
            return row

    async def commit_snapshot(self, snapshot: Snapshot, runner_id: str) -> bool:
        """Record an uploaded snapshot as its session's latest, unless another server has taken the session over
        since (its copy is newer than ours). Its generation is the next one of its session."""
        async with self.db() as db, db.begin():
            # FOR UPDATE: a coordinator moving the session to another runner (move_session) waits for this commit.
            runner = await db.scalar(
                select(SessionRow.runner_id).where(SessionRow.id == snapshot.session_id).with_for_update()
            )
            if runner is not None and runner != runner_id:
                return False
            last = await db.scalar(
                select(func.max(Snapshot.generation)).where(Snapshot.session_id == snapshot.session_id)
            )
            snapshot.generation = (last or 0) + 1
            db.add(snapshot)
        return True

    async def older_snapshots(self, session_id: uuid.UUID, keep: int) -> Sequence[Snapshot]:
        """The session's snapshots but its `keep` latest."""
        query = (
            select(Snapshot).where(Snapshot.session_id == session_id).order_by(Snapshot.generation.desc()).offset(keep)
        )
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def expired_snapshots(self, ended_before: datetime, limit: int = 500) -> Sequence[Snapshot]:
        """Snapshots of sessions that ended before `ended_before` (their retention is over)."""
        query = (
            select(Snapshot)
            .join(SessionRow, SessionRow.id == Snapshot.session_id)
            .where(SessionRow.status == SessionStatus.ENDED, SessionRow.ended_at < ended_before)
            .limit(limit)
        )
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def delete_snapshot_row(self, snapshot_id: str) -> None:
        async with self.db() as db, db.begin():
            await db.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))
