"""Every query the server makes, tenant-scoped. The domain talks to the database only through `Store`."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..errors import NotFound
from ..states import SandboxState, SessionStatus
from .database import session_factory
from .models import (
    Agent,
    ApiKey,
    Credential,
    Message,
    Runner,
    Sandbox,
    Session,
    SessionEvent,
    Snapshot,
    StreamEvent,
    Tenant,
    UsageEvent,
    utcnow,
)


class Store:
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

    # -- API keys -------------------------------------------------------------------------------------------

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        async with self.db() as db:
            result: ApiKey | None = await db.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
            return result

    async def add_api_key(self, key: ApiKey) -> ApiKey:
        async with self.db() as db, db.begin():
            db.add(key)
        return key

    async def add_api_key_if_absent(self, key: ApiKey) -> bool:
        """Insert unless a key with the same hash exists (two servers starting together with one ASH_API_KEY)."""
        try:
            await self.add_api_key(key)
        except IntegrityError:
            return False
        return True

    async def count_api_keys(self) -> int:
        async with self.db() as db:
            return int(await db.scalar(select(func.count()).select_from(ApiKey)) or 0)

    async def list_api_keys(self, tenant_id: str) -> Sequence[ApiKey]:
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at, ApiKey.id)
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def get_api_key(self, tenant_id: str, key_id: uuid.UUID) -> ApiKey | None:
        async with self.db() as db:
            key: ApiKey | None = await db.scalar(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id)
            )
            return key

    async def count_usable_api_keys(self, tenant_id: str, now: datetime) -> int:
        query = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.tenant_id == tenant_id,
                ApiKey.revoked_at.is_(None),
                (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
            )
        )
        async with self.db() as db:
            return int(await db.scalar(query) or 0)

    async def revoke_api_key(self, tenant_id: str, key_id: uuid.UUID, when: datetime) -> ApiKey | None:
        """Mark a key revoked (once: a second revoke keeps the first time). None if the tenant has no such key."""
        async with self.db() as db, db.begin():
            await db.execute(
                update(ApiKey)
                .where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=when)
                .execution_options(synchronize_session=False)
            )
        return await self.get_api_key(tenant_id, key_id)

    # -- Tenants --------------------------------------------------------------------------------------------

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self.db() as db:
            tenant: Tenant | None = await db.get(Tenant, tenant_id)
            return tenant

    async def add_tenant(self, tenant: Tenant) -> bool:
        """Insert a tenant; False if one with that id exists already."""
        try:
            async with self.db() as db, db.begin():
                db.add(tenant)
        except IntegrityError:
            return False
        return True

    async def list_tenants(self) -> Sequence[Tenant]:
        async with self.db() as db:
            return (await db.scalars(select(Tenant).order_by(Tenant.id))).all()

    async def touch_api_key(self, key_id: uuid.UUID, when: datetime) -> None:
        async with self.db() as db, db.begin():
            await db.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))

    # -- Agents ---------------------------------------------------------------------------------------------

    async def get_agent(self, tenant_id: str, name: str) -> Agent | None:
        async with self.db() as db:
            agent: Agent | None = await db.scalar(select(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name))
            return agent

    async def list_agents(self, tenant_id: str) -> Sequence[Agent]:
        async with self.db() as db:
            return (await db.scalars(select(Agent).where(Agent.tenant_id == tenant_id).order_by(Agent.name))).all()

    async def save_agent(self, agent: Agent) -> Agent:
        async with self.db() as db, db.begin():
            merged = await db.merge(agent)
        return merged

    async def delete_agent(self, tenant_id: str, name: str) -> bool:
        async with self.db() as db, db.begin():
            result = await db.execute(delete(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- Sessions -------------------------------------------------------------------------------------------

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

    async def update_session(self, session_id: uuid.UUID, **values: Any) -> None:
        async with self.db() as db, db.begin():
            await db.execute(update(Session).where(Session.id == session_id).values(**values))

    # -- Messages and events --------------------------------------------------------------------------------
    # Sequences are per session, 1, 2, 3... without gaps. A writer reserves its numbers by incrementing the
    # session row's counters as the first statement of its inserting transaction (UPDATE ... RETURNING): the row
    # stays locked until the transaction ends, so writers in any number of processes take turns, and a writer that
    # rolls back gives its numbers back. On SQLite the same UPDATE takes the database's write lock. The unique
    # constraints on (session_id, sequence) are the last line: a writer that bypassed this fails loudly.

    async def _reserve(
        self, db: AsyncSession, session_id: uuid.UUID, *, messages: int = 0, events: int = 0
    ) -> tuple[int, int]:
        """Reserve `messages` message and `events` event sequences; returns the last sequences before them."""
        statement = (
            update(Session)
            .where(Session.id == session_id)
            .values(
                last_message_seq=Session.last_message_seq + messages,
                last_event_seq=Session.last_event_seq + events,
            )
            .returning(Session.last_message_seq, Session.last_event_seq)
            .execution_options(synchronize_session=False)
        )
        row = (await db.execute(statement)).one_or_none()
        if row is None:
            raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
        return int(row[0]) - messages, int(row[1]) - events

    async def append_messages(self, session: Session, items: Sequence[tuple[str, str]]) -> list[Message]:
        """Append (role, JSON content) rows, returning them with their sequences."""
        async with self._write_lock(session.id), self.db() as db, db.begin():
            last, _ = await self._reserve(db, session.id, messages=len(items))
            rows = [
                Message(
                    session_id=session.id,
                    tenant_id=session.tenant_id,
                    role=role,
                    content=content,
                    sequence=last + i + 1,
                    created_at=utcnow(),
                )
                for i, (role, content) in enumerate(items)
            ]
            db.add_all(rows)
        return rows

    async def record_message(
        self, session: Session, role: str, content: str, events: Sequence[tuple[str, str | None]]
    ) -> None:
        """One SDK message and the timeline events derived from it, in one transaction."""
        async with self._write_lock(session.id), self.db() as db, db.begin():
            last_message, last_event = await self._reserve(db, session.id, messages=1, events=len(events))
            now = utcnow()
            db.add(
                Message(
                    session_id=session.id,
                    tenant_id=session.tenant_id,
                    role=role,
                    content=content,
                    sequence=last_message + 1,
                    created_at=now,
                )
            )
            if events:
                db.add_all(
                    SessionEvent(
                        session_id=session.id,
                        tenant_id=session.tenant_id,
                        type=kind,
                        data=data,
                        sequence=last_event + i + 1,
                        created_at=now,
                    )
                    for i, (kind, data) in enumerate(events)
                )

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

    async def append_events(self, session: Session, items: Sequence[tuple[str, str | None]]) -> None:
        if not items:
            return
        async with self._write_lock(session.id), self.db() as db, db.begin():
            _, last = await self._reserve(db, session.id, events=len(items))
            db.add_all(
                SessionEvent(
                    session_id=session.id,
                    tenant_id=session.tenant_id,
                    type=kind,
                    data=data,
                    sequence=last + i + 1,
                    created_at=utcnow(),
                )
                for i, (kind, data) in enumerate(items)
            )

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

    async def append_stream_events(self, rows: Sequence[StreamEvent]) -> None:
        if not rows:
            return
        async with self.db() as db, db.begin():
            db.add_all(rows)

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

    # -- Sandboxes ------------------------------------------------------------------------------------------

    async def save_sandbox(self, sandbox: Sandbox) -> None:
        async with self.db() as db, db.begin():
            await db.merge(sandbox)

    async def delete_sandbox(self, sandbox_id: str) -> None:
        async with self.db() as db, db.begin():
            await db.execute(delete(Sandbox).where(Sandbox.id == sandbox_id))

    async def list_sandboxes(self, server_id: str | None = None) -> Sequence[Sandbox]:
        """Every pool row, or those of one server (and rows written before servers were told apart)."""
        query = select(Sandbox)
        if server_id is not None:
            query = query.where((Sandbox.server_id == server_id) | Sandbox.server_id.is_(None))
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def add_session_on_sandbox(self, session: Session, sandbox_id: str) -> Session:
        """Insert a session that claims a warm sandbox, and mark that sandbox `waiting` for it: one transaction."""
        async with self.db() as db, db.begin():
            db.add(session)
            await db.execute(
                update(Sandbox)
                .where(Sandbox.id == sandbox_id)
                .values(state=SandboxState.WAITING, session_id=session.id, last_used_at=utcnow())
            )
        return session

    async def update_sandbox(self, sandbox_id: str, **values: Any) -> None:
        async with self.db() as db, db.begin():
            await db.execute(update(Sandbox).where(Sandbox.id == sandbox_id).values(**values))

    async def delete_cold_sandboxes(self, session_id: uuid.UUID) -> None:
        """The session has a sandbox again (or has ended): its cold rows, on any server, no longer stand for it."""
        async with self.db() as db, db.begin():
            await db.execute(
                delete(Sandbox).where(Sandbox.session_id == session_id, Sandbox.state == SandboxState.COLD)
            )

    async def live_sandbox_on(self, session_id: uuid.UUID, server_id: str) -> Sandbox | None:
        """A live (waiting or running) sandbox of this session on that server, if any."""
        query = select(Sandbox).where(
            Sandbox.session_id == session_id,
            Sandbox.state.in_((SandboxState.WAITING, SandboxState.RUNNING)),
            Sandbox.server_id == server_id,
        )
        async with self.db() as db:
            row: Sandbox | None = await db.scalar(query.limit(1))
            return row

    async def count_sandboxes(self, server_id: str, state: str) -> int:
        query = select(func.count()).select_from(Sandbox).where(Sandbox.server_id == server_id, Sandbox.state == state)
        async with self.db() as db:
            return int(await db.scalar(query) or 0)

    async def all_agents(self) -> Sequence[Agent]:
        """Every tenant's agents: what the warm pool keeps sandboxes for. Never used by a request."""
        async with self.db() as db:
            return (await db.scalars(select(Agent).order_by(Agent.tenant_id, Agent.name))).all()

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
                select(Session.runner_id).where(Session.id == snapshot.session_id).with_for_update()
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
            .join(Session, Session.id == Snapshot.session_id)
            .where(Session.status == SessionStatus.ENDED, Session.ended_at < ended_before)
            .limit(limit)
        )
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def delete_snapshot_row(self, snapshot_id: str) -> None:
        async with self.db() as db, db.begin():
            await db.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))

    # -- Credentials ----------------------------------------------------------------------------------------

    async def add_credential(self, credential: Credential) -> Credential:
        async with self.db() as db, db.begin():
            db.add(credential)
        return credential

    async def get_credential(self, tenant_id: str, credential_id: uuid.UUID) -> Credential | None:
        async with self.db() as db:
            credential: Credential | None = await db.scalar(
                select(Credential).where(Credential.tenant_id == tenant_id, Credential.id == credential_id)
            )
            return credential

    async def usable_credential_ids(self, credential_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these credentials still exist and are active (any tenant: a runner's revocation sweep)."""
        if not credential_ids:
            return set()
        query = select(Credential.id).where(Credential.id.in_(credential_ids), Credential.active.is_(True))
        async with self.db() as db:
            return set((await db.scalars(query)).all())

    async def list_credentials(self, tenant_id: str) -> Sequence[Credential]:
        query = select(Credential).where(Credential.tenant_id == tenant_id).order_by(Credential.created_at)
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def delete_credential(self, tenant_id: str, credential_id: uuid.UUID) -> bool:
        async with self.db() as db, db.begin():
            result = await db.execute(
                delete(Credential).where(Credential.tenant_id == tenant_id, Credential.id == credential_id)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def touch_credential(self, credential_id: uuid.UUID, when: datetime) -> None:
        async with self.db() as db, db.begin():
            await db.execute(update(Credential).where(Credential.id == credential_id).values(last_used_at=when))

    # -- Usage ----------------------------------------------------------------------------------------------

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
        async with self._write_lock(session_id), self.db() as db, db.begin():
            _, last = await self._reserve(db, session_id, events=1)
            db.add_all(
                UsageEvent(
                    tenant_id=tenant_id,
                    session_id=session_id,
                    agent_name=agent_name,
                    model=model,
                    event_type=kind,
                    value=value,
                    created_at=now,
                )
                for kind, value in metrics
            )
            db.add(
                SessionEvent(
                    session_id=session_id,
                    tenant_id=tenant_id,
                    type="lifecycle",
                    data=timeline,
                    sequence=last + 1,
                    created_at=now,
                )
            )

    def _usage_query(
        self,
        query: Any,
        tenant_id: str,
        *,
        session_id: uuid.UUID | None,
        agent_name: str | None,
        after: datetime | None,
        before: datetime | None,
    ) -> Any:
        query = query.where(UsageEvent.tenant_id == tenant_id)
        if session_id is not None:
            query = query.where(UsageEvent.session_id == session_id)
        if agent_name is not None:
            query = query.where(UsageEvent.agent_name == agent_name)
        if after is not None:
            query = query.where(UsageEvent.created_at > after)
        if before is not None:
            query = query.where(UsageEvent.created_at < before)
        return query

    async def list_usage(
        self,
        tenant_id: str,
        *,
        session_id: uuid.UUID | None = None,
        agent_name: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[UsageEvent]:
        query = self._usage_query(
            select(UsageEvent), tenant_id, session_id=session_id, agent_name=agent_name, after=after, before=before
        )
        async with self.db() as db:
            return (await db.scalars(query.order_by(UsageEvent.created_at, UsageEvent.id).limit(limit))).all()

    async def usage_totals(
        self,
        tenant_id: str,
        *,
        session_id: uuid.UUID | None = None,
        agent_name: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> list[tuple[str, str, float]]:
        """(model, event type, sum of values) over the matching usage rows."""
        query = self._usage_query(
            select(UsageEvent.model, UsageEvent.event_type, func.sum(UsageEvent.value)),
            tenant_id,
            session_id=session_id,
            agent_name=agent_name,
            after=after,
            before=before,
        ).group_by(UsageEvent.model, UsageEvent.event_type)
        async with self.db() as db:
            return [(str(m), str(t), float(v or 0)) for m, t, v in (await db.execute(query)).all()]

    # -- Runners (coordinator mode; cluster/registry.py) ----------------------------------------------------

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

    async def place_session(self, heard_since: datetime, exclude: Sequence[str] = ()) -> Runner | None:
        """Choose the least-loaded live runner for a new session and count the placement on it, in one
        transaction that every coordinator serializes on (an advisory lock on PostgreSQL, the write lock on
        SQLite): a burst of creates spreads instead of landing where the last heartbeat said there was room.
        Load = sandboxes at its last heartbeat + placements it had not received then, over its capacity."""
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
            candidates = [r for r in (await db.scalars(query)).all() if runner_load(r) < r.max_sandboxes]
            if not candidates:
                return None
            chosen = min(candidates, key=lambda r: (runner_load(r) / r.max_sandboxes, runner_load(r), r.id))
            db.expunge(chosen)  # a plain value for the caller: the count is changed by the statement only
            await db.execute(update(Runner).where(Runner.id == chosen.id).values(placed=Runner.placed + 1))
            return chosen

    async def session_and_runner(self, tenant_id: str, session_id: uuid.UUID) -> tuple[Session, Runner | None] | None:
        """A session and the runner that runs it, in one query (a coordinator's per-request routing lookup)."""
        query = (
            select(Session, Runner)
            .outerjoin(Runner, Runner.id == Session.runner_id)
            .where(Session.tenant_id == tenant_id, Session.id == session_id)
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

    async def sessions_on_runner(self, runner_id: str, statuses: Sequence[str]) -> Sequence[Session]:
        query = select(Session).where(Session.runner_id == runner_id, Session.status.in_(statuses))
        async with self.db() as db:
            return (await db.scalars(query)).all()

    async def moved_sessions(self, session_ids: Sequence[uuid.UUID], runner_id: str) -> list[uuid.UUID]:
        """Which of these sessions another runner runs now (or that ended): a runner drops its sandboxes of them."""
        if not session_ids:
            return []
        query = select(Session.id).where(
            Session.id.in_(session_ids), (Session.runner_id != runner_id) | (Session.status == SessionStatus.ENDED)
        )
        async with self.db() as db:
            return [r for r in (await db.scalars(query)).all()]

    async def move_session(self, session_id: uuid.UUID, from_runner: str | None, to_runner: str) -> bool:
        """Hand a session whose runner is gone to another one, if nobody has since (compare and set)."""
        where = Session.runner_id.is_(None) if from_runner is None else Session.runner_id == from_runner
        async with self.db() as db, db.begin():
            query = update(Session).where(Session.id == session_id, where).values(runner_id=to_runner, sandbox_id="")
            return bool((await db.execute(query)).rowcount)  # type: ignore[attr-defined]


def _session_filter(tenant_id: str, agent: str | None, status: str | None) -> list[ColumnElement[bool]]:
    where = [Session.tenant_id == tenant_id]
    if agent is not None:
        where.append(Session.agent_name == agent)
    if status is not None:
        where.append(Session.status == status)
    return where


def runner_load(runner: Runner) -> int:
    """Sandboxes a runner holds, counting the sessions placed on it since its last heartbeat."""
    return runner.sandboxes + max(0, runner.placed - runner.received)
