"""The routing state of coordinator mode, on both engines: placement counts fresh placements as load, concurrent
placements from several connections spread, dead runners are declared once, sessions move by compare-and-set."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from ash_server.cluster.placement import least_loaded, runner_load
from ash_server.store.database import create_engine
from ash_server.store.models import Runner, SessionRow, Snapshot, utcnow
from ash_server.store.repository import Store


def runner(runner_id: str, capacity: int = 10) -> Runner:
    now = utcnow()
    return Runner(
        id=runner_id,
        url=f"http://{runner_id}:4200",
        status="live",
        max_sandboxes=capacity,
        sandboxes=0,
        placed=0,
        received=0,
        stats={},
        version="test",
        draining=False,
        registered_at=now,
        last_heartbeat_at=now,
    )


async def test_placements_count_as_load_until_the_runner_reports_them(store: Store) -> None:
    await store.register_runner(runner("a"))
    await store.register_runner(runner("b"))
    since = utcnow() - timedelta(seconds=10)
    chosen = [(await store.place_session(since, least_loaded)).id for _ in range(6)]  # type: ignore[union-attr]
    assert sorted(chosen) == ["a", "a", "a", "b", "b", "b"]
    # `a` reports 3 sandboxes and having received its 3 placements: its load stays 3, nothing double counted.
    assert await store.runner_heartbeat("a", sandboxes=3, received=3, stats={"running": 1}, now=utcnow())
    loads = {r.id: runner_load(r) for r in await store.list_runners()}
    assert loads == {"a": 3, "b": 3}
    # A draining runner and a full one get nothing; excluded runners neither.
    await store.set_runner_draining("a")
    assert (await store.place_session(since, least_loaded)).id == "b"  # type: ignore[union-attr]
    assert await store.place_session(since, least_loaded, exclude=["b"]) is None
    await store.unplace("b")
    assert runner_load(next(r for r in await store.list_runners() if r.id == "b")) == 3


async def test_concurrent_placements_from_many_connections_spread(database_url: str) -> None:
    stores = [Store(create_engine(database_url)) for _ in range(4)]
    try:
        for name in ("a", "b", "c", "d"):
            await stores[0].register_runner(runner(name, capacity=100))
        since = utcnow() - timedelta(seconds=10)
        placed = await asyncio.gather(*(stores[i % 4].place_session(since, least_loaded) for i in range(40)))
        counts: dict[str, int] = {}
        for r in placed:
            assert r is not None
            counts[r.id] = counts.get(r.id, 0) + 1
        assert counts == {"a": 10, "b": 10, "c": 10, "d": 10}
    finally:
        for s in stores:
            await s.close()


async def test_silent_runners_are_declared_dead_once_and_refuse_heartbeats(store: Store) -> None:
    await store.register_runner(runner("a"))
    await store.register_runner(runner("b"))
    await store.runner_heartbeat("b", sandboxes=0, received=0, stats={}, now=utcnow() + timedelta(seconds=30))
    assert await store.mark_dead_runners(utcnow() + timedelta(seconds=5)) == ["a"]
    assert await store.mark_dead_runners(utcnow() + timedelta(seconds=5)) == []
    assert not await store.runner_heartbeat("a", sandboxes=0, received=0, stats={}, now=utcnow())
    assert await store.place_session(utcnow() - timedelta(seconds=10), least_loaded) is not None  # b only
    await store.register_runner(runner("a"))  # it registers again: live
    assert await store.runner_heartbeat("a", sandboxes=0, received=0, stats={}, now=utcnow())


async def test_a_session_moves_once_and_its_old_runner_cannot_snapshot_it(store: Store) -> None:
    session = await store.add_session(
        SessionRow(tenant_id="default", agent_name="x", agent_version=1, status="active", config={}, runner_id="a")
    )
    assert await store.move_session(session.id, "a", "b")
    assert not await store.move_session(session.id, "a", "c")  # someone moved it first
    assert await store.moved_sessions([session.id, uuid.uuid4()], "a") == [session.id]
    assert await store.moved_sessions([session.id], "b") == []
    stale = Snapshot(
        id="s1",
        tenant_id="default",
        session_id=session.id,
        generation=0,
        key="k",
        size=1,
        sha256="0" * 64,
        server_id="a",
        created_at=utcnow(),
    )
    assert not await store.commit_snapshot(stale, "a")
    assert await store.latest_snapshot(session.id) is None
