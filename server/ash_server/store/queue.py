"""The queue: prompts enqueued for an agent or a session, worked off by a DB-backed worker (queue/worker.py).

A claim is a lease: the worker that runs an item renews `lease_until` while it runs, so an item whose server died
(status running, lease expired) is claimed again by whichever worker looks next: at-least-once, across restarts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, Uuid, and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, aliased, mapped_column

from .models import DEFAULT_TENANT, Base, UTCDateTime, utcnow
from .repository import Store


class QueueStatus(StrEnum):
    """An item's state; the values are the reference's names on the wire."""

    PENDING = "pending"
    RUNNING = "processing"
    DONE = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class QueueItem(Base):
    __tablename__ = "queue_items"
    __table_args__ = (
        Index("ix_queue_items_tenant_created", "tenant_id", "created_at"),
        # The worker's scan: pending (and running, for expired leases) items by priority.
        Index("ix_queue_items_status_priority", "status", "priority"),
        Index("ix_queue_items_session_status", "session_id", "status"),
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_queue_items_tenant_idempotency_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), nullable=True)
    agent_name: Mapped[str] = mapped_column(String(255))
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=QueueStatus.PENDING)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    retry_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# The error an item keeps when the server that ran it died before the run ended.
DIED = "the server running this item stopped before it finished"


def attempts_left(item: QueueItem) -> bool:
    """Whether a failed attempt goes back to pending. As the reference counts: `maxRetries` attempts in all (at
    least one), so 3 means a first try and two retries."""
    return item.retry_count < max(item.max_retries, 1)


class QueueRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def enqueue(self, item: QueueItem) -> tuple[QueueItem, bool]:
        """Insert `item`; with an idempotency key already used by its tenant, the existing item instead.
        Returns the item and whether it is new."""
        if item.idempotency_key is not None:
            existing = await self.by_key(item.tenant_id, item.idempotency_key)
            if existing is not None:
                return existing, False
        try:
            async with self.store.db() as db, db.begin():
                db.add(item)
                await db.flush()
                db.expunge(item)
        except IntegrityError:
            # Another request with the same key won the race between our look-up and our insert.
            assert item.idempotency_key is not None
            existing = await self.by_key(item.tenant_id, item.idempotency_key)
            if existing is None:
                raise
            return existing, False
        return item, True

    async def by_key(self, tenant_id: str, key: str) -> QueueItem | None:
        async with self.store.db() as db:
            query = select(QueueItem).where(QueueItem.tenant_id == tenant_id, QueueItem.idempotency_key == key)
            item: QueueItem | None = (await db.scalars(query)).first()
            return item

    async def get(self, tenant_id: str, item_id: uuid.UUID) -> QueueItem | None:
        async with self.store.db() as db:
            item = await db.get(QueueItem, item_id)
            return item if item is not None and item.tenant_id == tenant_id else None

    async def list(self, tenant_id: str, status: QueueStatus | None, limit: int) -> Sequence[QueueItem]:
        query = select(QueueItem).where(QueueItem.tenant_id == tenant_id)
        if status is not None:
            query = query.where(QueueItem.status == status)
        query = query.order_by(QueueItem.created_at.desc(), QueueItem.id).limit(limit)
        async with self.store.db() as db:
            return (await db.scalars(query)).all()

    async def stats(self, tenant_id: str) -> dict[QueueStatus, int]:
        query = (
            select(QueueItem.status, func.count()).where(QueueItem.tenant_id == tenant_id).group_by(QueueItem.status)
        )
        counts = dict.fromkeys(QueueStatus, 0)
        async with self.store.db() as db:
            for status, count in (await db.execute(query)).all():
                if status in counts:
                    counts[QueueStatus(status)] = int(count)
        return counts

    async def cancel(self, tenant_id: str, item_id: uuid.UUID) -> bool:
        """Pending → cancelled, only if still pending (a worker may claim it meanwhile)."""
        statement = update(QueueItem).where(
            QueueItem.id == item_id, QueueItem.tenant_id == tenant_id, QueueItem.status == QueueStatus.PENDING
        )
        async with self.store.db() as db, db.begin():
            result = await db.execute(statement.values(status=QueueStatus.CANCELLED, completed_at=utcnow()))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- The worker's side -----------------------------------------------------------------------------------

    async def reap(self) -> int:
        """Running items whose lease expired (their server died mid-run) count a failed attempt: back to pending,
        or failed when no attempt is left. Returns how many were reaped."""
        now = utcnow()
        stale = and_(QueueItem.status == QueueStatus.RUNNING, QueueItem.lease_until < now)
        last = QueueItem.retry_count + 1 >= func.max(QueueItem.max_retries, 1)
        if self.store.engine.dialect.name == "postgresql":
            last = QueueItem.retry_count + 1 >= func.greatest(QueueItem.max_retries, 1)
        common = {"retry_count": QueueItem.retry_count + 1, "error": DIED, "claimed_by": None, "lease_until": None}
        async with self.store.db() as db, db.begin():
            failed = await db.execute(
                update(QueueItem).where(stale, last).values(status=QueueStatus.FAILED, completed_at=now, **common)
            )
            retried = await db.execute(
                update(QueueItem).where(stale, ~last).values(status=QueueStatus.PENDING, retry_after=None, **common)
            )
            return int(failed.rowcount) + int(retried.rowcount)  # type: ignore[attr-defined]

    async def claim(self, worker_id: str, lease: timedelta) -> QueueItem | None:
        """Claim the next runnable item for `worker_id`, atomically: a pending item whose retry time has come whose
        session has no running item (one turn at a time per session). Highest priority first, then oldest.

        PostgreSQL: claimers serialize on an advisory lock (so the per-session check sees every claim) and skip rows
        other transactions hold (`FOR UPDATE SKIP LOCKED`, e.g. a cancel). SQLite: one UPDATE statement with the
        choice as its subquery, which SQLite's single writer makes atomic."""
        now = utcnow()
        other = aliased(QueueItem)
        busy_session = exists().where(
            other.session_id == QueueItem.session_id, other.id != QueueItem.id, other.status == QueueStatus.RUNNING
        )
        runnable = and_(
            QueueItem.status == QueueStatus.PENDING,
            or_(QueueItem.retry_after.is_(None), QueueItem.retry_after <= now),
        )
        choice = (
            select(QueueItem.id)
            .where(runnable, or_(QueueItem.session_id.is_(None), ~busy_session))
            .order_by(QueueItem.priority.desc(), QueueItem.created_at, QueueItem.id)
            .limit(1)
        )
        values = {
            "status": QueueStatus.RUNNING,
            "claimed_by": worker_id,
            "lease_until": now + lease,
            "started_at": now,
            "retry_after": None,
        }
        async with self.store.db() as db, db.begin():
            if self.store.engine.dialect.name == "postgresql":
                await db.execute(select(func.pg_advisory_xact_lock(4242000009)))
                chosen = (await db.execute(choice.with_for_update(skip_locked=True, of=QueueItem))).scalar()
                if chosen is None:
                    return None
                target = QueueItem.id == chosen
            else:
                target = QueueItem.id == choice.scalar_subquery()
            statement = update(QueueItem).where(target, runnable).values(**values).returning(QueueItem)
            item: QueueItem | None = (await db.scalars(statement)).first()
            if item is not None:
                db.expunge(item)
            return item

    async def _update_claimed(self, item: QueueItem, worker_id: str, **values: object) -> bool:
        """Change an item this worker still holds; False if its claim was lost (lease expired, taken over)."""
        statement = update(QueueItem).where(
            QueueItem.id == item.id, QueueItem.status == QueueStatus.RUNNING, QueueItem.claimed_by == worker_id
        )
        async with self.store.db() as db, db.begin():
            return bool((await db.execute(statement.values(**values))).rowcount)  # type: ignore[attr-defined]

    async def renew(self, item: QueueItem, worker_id: str, lease: timedelta) -> bool:
        return await self._update_claimed(item, worker_id, lease_until=utcnow() + lease)

    async def set_session(self, item: QueueItem, worker_id: str, session_id: uuid.UUID) -> bool:
        """The session the worker created for an agent's item: a retry continues it instead of making another."""
        return await self._update_claimed(item, worker_id, session_id=session_id)

    async def complete(self, item: QueueItem, worker_id: str, result: str) -> bool:
        return await self._update_claimed(
            item, worker_id, status=QueueStatus.DONE, result=result, error=None, completed_at=utcnow(),
            claimed_by=None, lease_until=None,
        )  # fmt: skip

    async def fail(self, item: QueueItem, worker_id: str, error: str, backoff: timedelta | None) -> bool:
        """Count a failed attempt: back to pending after `backoff`, or failed for good when no attempt is left
        (or `backoff` is None: the item cannot succeed)."""
        item.retry_count += 1
        final = backoff is None or not attempts_left(item)
        return await self._update_claimed(
            item, worker_id, retry_count=QueueItem.retry_count + 1, error=error, claimed_by=None, lease_until=None,
            status=QueueStatus.FAILED if final else QueueStatus.PENDING,
            completed_at=utcnow() if final else None,
            retry_after=None if final or backoff is None else utcnow() + backoff,
        )  # fmt: skip

    async def release(self, item: QueueItem, worker_id: str, delay: timedelta = timedelta(0)) -> bool:
        """Give an item back without counting an attempt (shutdown, the session busy with another turn)."""
        return await self._update_claimed(
            item, worker_id, status=QueueStatus.PENDING, claimed_by=None, lease_until=None,
            retry_after=utcnow() + delay if delay else None,
        )  # fmt: skip

    async def expire_claims_of(self, worker_id: str) -> int:
        """A restarted server's claims from before are dead: let them be claimed now instead of at lease end."""
        statement = update(QueueItem).where(QueueItem.status == QueueStatus.RUNNING, QueueItem.claimed_by == worker_id)
        async with self.store.db() as db, db.begin():
            result = await db.execute(statement.values(lease_until=utcnow() - timedelta(seconds=1)))
            return int(result.rowcount)  # type: ignore[attr-defined]
