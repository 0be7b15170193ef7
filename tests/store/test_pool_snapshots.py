"""The pool's rows and the snapshots' rows, on SQLite and PostgreSQL: scoped by server, committed in order."""

from __future__ import annotations

import uuid
from datetime import timedelta

from ash_server.store.models import SandboxRow, SessionRow, Snapshot, utcnow
from ash_server.store.repository import Store

ME, OTHER = "srv-me", "srv-other"


async def new_session(store: Store, **values: object) -> SessionRow:
    now = utcnow()
    return await store.add_session(
        SessionRow(
            tenant_id="t",
            agent_name="helper",
            agent_version=1,
            status=values.pop("status", "active"),
            config={},
            created_at=now,
            last_active_at=now,
            **values,
        )
    )


def sandbox(session: SessionRow, state: str, server_id: str | None) -> SandboxRow:
    now = utcnow()
    return SandboxRow(
        id="sbx-" + uuid.uuid4().hex[:16],
        tenant_id="t",
        session_id=session.id,
        state=state,
        pid=None,
        created_at=now,
        last_used_at=now,
        server_id=server_id,
    )


def snapshot(session: SessionRow) -> Snapshot:
    id_ = uuid.uuid4().hex
    return Snapshot(
        id=id_,
        tenant_id="t",
        session_id=session.id,
        generation=0,
        key=f"t/{session.id}/{id_}.tar.zst",
        size=1,
        sha256="0" * 64,
        server_id=ME,
        created_at=utcnow(),
    )


async def test_pool_rows_are_scoped_by_server(store: Store) -> None:
    session = await new_session(store)
    mine, theirs, legacy = (
        sandbox(session, "waiting", ME),
        sandbox(session, "running", OTHER),
        sandbox(session, "cold", None),
    )
    for row in (mine, theirs, legacy):
        await store.save_sandbox(row)
    assert {r.id for r in await store.list_sandboxes(ME)} == {mine.id, legacy.id}
    assert len(await store.list_sandboxes()) == 3
    live = await store.live_sandbox_on(session.id, OTHER)
    assert live is not None and live.id == theirs.id
    assert await store.live_sandbox_on(session.id, "srv-third") is None
    await store.update_sandbox(mine.id, state="cold", pid=None)
    assert await store.count_sandboxes(ME, "cold") == 1
    await store.delete_cold_sandboxes(session.id)
    assert {r.id for r in await store.list_sandboxes()} == {theirs.id}


async def test_recovery_finds_only_the_sessions_a_server_ran(store: Store) -> None:
    mine = await new_session(store, runner_id=ME)
    await new_session(store, runner_id=OTHER)
    unclaimed = await new_session(store)
    found = await store.sessions_with_status(["active"], runner_id=ME)
    assert {s.id for s in found} == {mine.id, unclaimed.id}
    states = await store.session_states([mine.id, uuid.uuid4()])
    assert list(states) == [mine.id] and states[mine.id][0] == "active"


async def test_snapshots_commit_in_generations_unless_the_session_moved(store: Store) -> None:
    session = await new_session(store, runner_id=ME)
    assert await store.latest_snapshot(session.id) is None
    rows = [snapshot(session) for _ in range(3)]
    for row in rows:
        assert await store.commit_snapshot(row, ME)
    latest = await store.latest_snapshot(session.id)
    assert latest is not None and (latest.id, latest.generation) == (rows[2].id, 3)
    assert [r.id for r in await store.older_snapshots(session.id, 2)] == [rows[0].id]
    await store.update_session(session.id, runner_id=OTHER)
    late = snapshot(session)
    assert not await store.commit_snapshot(late, ME)  # another server took the session over
    latest = await store.latest_snapshot(session.id)
    assert latest is not None and latest.id == rows[2].id
    await store.delete_snapshot_row(rows[0].id)
    assert [r.id for r in await store.older_snapshots(session.id, 1)] == [rows[1].id]


async def test_expired_snapshots_are_those_of_sessions_ended_before_the_cutoff(store: Store) -> None:
    now = utcnow()
    old = await new_session(store, status="ended", ended_at=now - timedelta(days=8))
    recent = await new_session(store, status="ended", ended_at=now - timedelta(hours=1))
    live = await new_session(store)
    for session in (old, recent, live):
        assert await store.commit_snapshot(snapshot(session), ME)
    expired = await store.expired_snapshots(now - timedelta(days=7))
    assert [r.session_id for r in expired] == [old.id]
