"""The queue's claim, retry and lease logic, on both engines."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from ash_server.store.queue import DIED, QueueItem, QueueRepository, QueueStatus
from ash_server.store.repository import Store

LEASE = timedelta(seconds=60)


def item(tenant: str = "default", session: uuid.UUID | None = None, **values: object) -> QueueItem:
    fields: dict[str, object] = {"priority": 0, "max_retries": 3, "retry_count": 0, "status": QueueStatus.PENDING}
    fields.update(values)
    return QueueItem(id=uuid.uuid4(), tenant_id=tenant, agent_name="a", prompt="p", session_id=session, **fields)


async def test_claims_by_priority_then_age_and_only_once(store: Store) -> None:
    repo = QueueRepository(store)
    low, _ = await repo.enqueue(item())
    high, _ = await repo.enqueue(item(priority=5))
    first = await repo.claim("w1", LEASE)
    second = await repo.claim("w2", LEASE)
    assert first is not None and second is not None
    assert (first.id, second.id) == (high.id, low.id)
    assert first.status == QueueStatus.RUNNING and first.claimed_by == "w1"
    assert await repo.claim("w1", LEASE) is None


async def test_concurrent_claims_never_share_an_item(store: Store) -> None:
    repo = QueueRepository(store)
    for _ in range(6):
        await repo.enqueue(item())
    claimed = await asyncio.gather(*(repo.claim(f"w{i}", LEASE) for i in range(8)))
    ids = [c.id for c in claimed if c is not None]
    assert len(ids) == 6 and len(set(ids)) == 6


async def test_one_item_of_a_session_runs_at_a_time(store: Store) -> None:
    repo = QueueRepository(store)
    session = uuid.uuid4()
    first, _ = await repo.enqueue(item(session=session))
    await repo.enqueue(item(session=session))
    other, _ = await repo.enqueue(item(session=uuid.uuid4()))
    running = await repo.claim("w", LEASE)
    assert running is not None and running.id == first.id
    nxt = await repo.claim("w", LEASE)
    assert nxt is not None and nxt.id == other.id  # the session's second item waits
    assert await repo.claim("w", LEASE) is None
    assert await repo.complete(running, "w", "ok")
    after = await repo.claim("w", LEASE)
    assert after is not None and after.session_id == session


async def test_failures_retry_after_backoff_then_fail(store: Store) -> None:
    repo = QueueRepository(store)
    queued, _ = await repo.enqueue(item(max_retries=2))
    claimed = await repo.claim("w", LEASE)
    assert claimed is not None
    await repo.fail(claimed, "w", "boom", backoff=timedelta(hours=1))
    got = await repo.get("default", queued.id)
    assert got is not None and (got.status, got.retry_count, got.error) == (QueueStatus.PENDING, 1, "boom")
    assert await repo.claim("w", LEASE) is None  # not before its retry time
    await repo.fail(claimed, "w", "x", backoff=timedelta(0))  # claim lost: nothing changes
    again = await repo.get("default", queued.id)
    assert again is not None and again.retry_count == 1
    # Its retry time comes (set it to now), the second attempt fails too: no attempt left.
    async with store.db() as db, db.begin():
        row = await db.get(QueueItem, queued.id)
        assert row is not None
        row.retry_after = None
    second = await repo.claim("w", LEASE)
    assert second is not None
    await repo.fail(second, "w", "boom again", backoff=timedelta(0))
    final = await repo.get("default", queued.id)
    assert final is not None and (final.status, final.retry_count) == (QueueStatus.FAILED, 2)
    assert final.completed_at is not None


async def test_a_dead_servers_claim_is_reaped_and_counted(store: Store) -> None:
    repo = QueueRepository(store)
    retried, _ = await repo.enqueue(item())
    last, _ = await repo.enqueue(item(max_retries=1))
    for _ in range(2):
        assert await repo.claim("dead", timedelta(seconds=-1)) is not None  # leases already run out
    assert await repo.reap() == 2
    got = await repo.get("default", retried.id)
    assert got is not None and (got.status, got.retry_count, got.error) == (QueueStatus.PENDING, 1, DIED)
    failed = await repo.get("default", last.id)
    assert failed is not None and failed.status == QueueStatus.FAILED
    assert await repo.reap() == 0


async def test_a_restarted_server_takes_its_claims_back(store: Store) -> None:
    repo = QueueRepository(store)
    queued, _ = await repo.enqueue(item())
    assert await repo.claim("me", LEASE) is not None
    assert await repo.reap() == 0  # the lease holds
    assert await repo.expire_claims_of("someone-else") == 0
    assert await repo.expire_claims_of("me") == 1
    assert await repo.reap() == 1
    again = await repo.claim("me", LEASE)
    assert again is not None and again.id == queued.id


async def test_idempotency_key_is_per_tenant(store: Store) -> None:
    repo = QueueRepository(store)
    first, created = await repo.enqueue(item(idempotency_key="k"))
    replay, again = await repo.enqueue(item(idempotency_key="k"))
    other, other_created = await repo.enqueue(item(tenant="t2", idempotency_key="k"))
    assert created and not again and replay.id == first.id
    assert other_created and other.id != first.id


async def test_cancel_only_pending_and_stats(store: Store) -> None:
    repo = QueueRepository(store)
    pending, _ = await repo.enqueue(item())
    running, _ = await repo.enqueue(item(priority=9))
    assert await repo.claim("w", LEASE) is not None
    assert not await repo.cancel("default", running.id)
    assert not await repo.cancel("t2", pending.id)
    assert await repo.cancel("default", pending.id)
    stats = await repo.stats("default")
    assert stats[QueueStatus.RUNNING] == 1 and stats[QueueStatus.CANCELLED] == 1
    assert stats[QueueStatus.PENDING] == 0
    assert (await repo.stats("t2"))[QueueStatus.RUNNING] == 0
