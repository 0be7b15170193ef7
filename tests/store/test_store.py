"""The store's contract, on SQLite and on PostgreSQL (every test runs on both, see conftest.py): what the domain
relies on, tenant scoping above all."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ash_server.errors import NotFound
from ash_server.store.models import (
    Agent,
    ApiKey,
    Credential,
    SessionRow,
    Tenant,
    utcnow,
)
from ash_server.store.repository import Store
from ash_server.store.usage import UsageFilter

A, B = "tenant-a", "tenant-b"


def agent(tenant: str, name: str, **values: object) -> Agent:
    now = utcnow()
    return Agent(
        tenant_id=tenant,
        name=name,
        version=1,
        path=f"/agents/{name}",
        managed=True,
        env=values.pop("env", {}),
        config=values.pop("config", {}),
        created_at=now,
        updated_at=now,
        **values,
    )


def session(tenant: str, agent_name: str = "helper", **values: object) -> SessionRow:
    now = values.pop("created_at", utcnow())
    return SessionRow(
        tenant_id=tenant,
        agent_name=agent_name,
        agent_version=1,
        status=values.pop("status", "active"),
        config=values.pop("config", {}),
        created_at=now,
        last_active_at=now,
        **values,
    )


def api_key(tenant: str, key_hash: str, **values: object) -> ApiKey:
    return ApiKey(tenant_id=tenant, key_hash=key_hash, prefix=key_hash[:12], created_at=utcnow(), **values)


# -- Tenants and API keys ----------------------------------------------------------------------------------------


async def test_tenants_are_created_once(store: Store) -> None:
    assert await store.add_tenant(Tenant(id=A, label="Team A", created_at=utcnow()))
    assert not await store.add_tenant(Tenant(id=A, created_at=utcnow()))
    await store.add_tenant(Tenant(id=B, created_at=utcnow()))
    found = await store.get_tenant(A)
    assert found is not None and found.label == "Team A"
    assert await store.get_tenant("nobody") is None
    assert [t.id for t in await store.list_tenants()] == [A, B]


async def test_api_keys_are_found_by_hash_and_listed_per_tenant(store: Store) -> None:
    first = await store.add_api_key(api_key(A, "a" * 64, label="first"))
    await store.add_api_key(api_key(A, "b" * 64))
    other = await store.add_api_key(api_key(B, "c" * 64))
    found = await store.find_api_key("a" * 64)
    assert found is not None and found.id == first.id and found.tenant_id == A and found.label == "first"
    assert await store.find_api_key("d" * 64) is None
    assert [k.key_hash for k in await store.list_api_keys(A)] == ["a" * 64, "b" * 64]
    assert await store.get_api_key(A, other.id) is None  # another tenant's key does not exist for A
    assert await store.count_api_keys() == 3


async def test_the_same_key_hash_is_stored_once(store: Store) -> None:
    assert await store.add_api_key_if_absent(api_key(A, "a" * 64))
    assert not await store.add_api_key_if_absent(api_key(B, "a" * 64))
    assert [k.tenant_id for k in await store.list_api_keys(A)] == [A]
    assert await store.list_api_keys(B) == []


async def test_revoking_a_key_is_tenant_scoped_and_keeps_the_first_time(store: Store) -> None:
    key = await store.add_api_key(api_key(A, "a" * 64))
    assert await store.revoke_api_key(B, key.id, utcnow()) is None
    unchanged = await store.find_api_key("a" * 64)
    assert unchanged is not None and unchanged.revoked_at is None
    first = utcnow()
    revoked = await store.revoke_api_key(A, key.id, first)
    assert revoked is not None and revoked.revoked_at == first
    again = await store.revoke_api_key(A, key.id, first + timedelta(hours=1))
    assert again is not None and again.revoked_at == first


async def test_usable_keys_exclude_revoked_and_expired_ones(store: Store) -> None:
    now = utcnow()
    await store.add_api_key(api_key(A, "a" * 64))
    await store.add_api_key(api_key(A, "b" * 64, expires_at=now + timedelta(days=1)))
    await store.add_api_key(api_key(A, "c" * 64, expires_at=now - timedelta(seconds=1)))
    await store.add_api_key(api_key(A, "d" * 64, revoked_at=now))
    await store.add_api_key(api_key(B, "e" * 64))
    assert await store.count_usable_api_keys(A, now) == 2


async def test_touching_a_key_records_its_last_use(store: Store) -> None:
    key = await store.add_api_key(api_key(A, "a" * 64))
    when = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    await store.touch_api_key(key.id, when)
    found = await store.find_api_key("a" * 64)
    assert found is not None and found.last_used_at == when


# -- Agents ------------------------------------------------------------------------------------------------------


async def test_agents_are_per_tenant(store: Store) -> None:
    await store.save_agent(agent(A, "helper", env={"TOKEN": "x"}, config={"limits": {"memoryMb": 512}}))
    await store.save_agent(agent(B, "helper"))  # the same name in another tenant is another agent
    await store.save_agent(agent(A, "another"))
    mine = await store.get_agent(A, "helper")
    theirs = await store.get_agent(B, "helper")
    assert mine is not None and theirs is not None and mine.id != theirs.id
    assert mine.env == {"TOKEN": "x"} and mine.config == {"limits": {"memoryMb": 512}}
    assert [a.name for a in await store.list_agents(A)] == ["another", "helper"]
    assert [a.name for a in await store.list_agents(B)] == ["helper"]
    assert await store.get_agent("tenant-c", "helper") is None


async def test_saving_an_agent_again_updates_it(store: Store) -> None:
    saved = await store.save_agent(agent(A, "helper"))
    saved.version += 1
    saved.config = {**saved.config, "network": "none"}
    await store.save_agent(saved)
    found = await store.get_agent(A, "helper")
    assert found is not None and found.version == 2 and found.config == {"network": "none"}


async def test_deleting_an_agent_is_tenant_scoped(store: Store) -> None:
    await store.save_agent(agent(A, "helper"))
    assert not await store.delete_agent(B, "helper")
    assert await store.get_agent(A, "helper") is not None
    assert await store.delete_agent(A, "helper")
    assert not await store.delete_agent(A, "helper")


# -- Sessions ----------------------------------------------------------------------------------------------------


async def test_sessions_are_per_tenant(store: Store) -> None:
    mine = await store.add_session(session(A, config={"model": "claude-x", "extraEnv": {"A": "1"}}))
    assert (await store.get_session(B, mine.id)) is None
    found = await store.get_session(A, mine.id)
    assert found is not None and found.config == {"model": "claude-x", "extraEnv": {"A": "1"}}
    assert found.last_message_seq == 0 and found.last_event_seq == 0
    await store.add_session(session(B))
    assert [s.id for s in await store.list_sessions(A)] == [mine.id]


async def test_agents_used_since_gives_each_agents_newest_session(store: Store) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for minutes, tenant, name in ((0, A, "helper"), (10, A, "helper"), (5, B, "helper"), (1, A, "old")):
        await store.add_session(session(tenant, name, created_at=start + timedelta(minutes=minutes)))
    used = await store.agents_used_since(start + timedelta(minutes=2))
    assert used == {(A, "helper"): start + timedelta(minutes=10), (B, "helper"): start + timedelta(minutes=5)}


async def test_listing_sessions_filters_orders_and_pages(store: Store) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    ids = []
    for i in range(5):
        created = await store.add_session(
            session(
                A,
                "helper" if i % 2 else "other",
                status="ended" if i == 4 else "active",
                created_at=start + timedelta(minutes=i),
            )
        )
        ids.append(created.id)
    newest_first = list(reversed(ids))
    assert [s.id for s in await store.list_sessions(A)] == newest_first
    assert [s.id for s in await store.list_sessions(A, limit=2, offset=1)] == newest_first[1:3]
    assert [s.id for s in await store.list_sessions(A, agent="helper")] == [ids[3], ids[1]]
    assert [s.id for s in await store.list_sessions(A, status="ended")] == [ids[4]]
    assert await store.count_sessions(["active"]) == 4
    assert {s.id for s in await store.sessions_with_status(["ended"])} == {ids[4]}


async def test_updating_a_session(store: Store) -> None:
    created = await store.add_session(session(A))
    later = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    await store.update_session(created.id, status="paused", sdk_session_id="sdk-1", last_active_at=later)
    found = await store.get_session(A, created.id)
    assert found is not None and (found.status, found.sdk_session_id, found.last_active_at) == (
        "paused",
        "sdk-1",
        later,
    )


async def test_times_come_back_as_utc(store: Store) -> None:
    local = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    created = await store.add_session(session(A, created_at=local))
    found = await store.get_session(A, created.id)
    assert found is not None
    assert found.created_at == local and found.created_at.utcoffset() == timedelta(0)
    assert found.created_at.hour == 10


# -- Messages and timeline events --------------------------------------------------------------------------------


async def test_messages_get_sequences_one_two_three(store: Store) -> None:
    owner = await store.add_session(session(A))
    first = await store.append_messages(owner, [("user", '"hello"')])
    await store.record_message(owner, "assistant", '{"type": "assistant"}', [("text", '"hi"'), ("result", "{}")])
    more = await store.append_messages(owner, [("user", '"a"'), ("user", '"b"')])
    assert [m.sequence for m in first + more] == [1, 3, 4]
    messages = await store.list_messages(A, owner.id)
    assert [(m.sequence, m.role) for m in messages] == [(1, "user"), (2, "assistant"), (3, "user"), (4, "user")]
    assert [m.sequence for m in await store.list_messages(A, owner.id, after=1, limit=2)] == [2, 3]
    events = await store.list_events(A, owner.id)
    assert [(e.sequence, e.type) for e in events] == [(1, "text"), (2, "result")]
    found = await store.get_session(A, owner.id)
    assert found is not None and (found.last_message_seq, found.last_event_seq) == (4, 2)


async def test_messages_and_events_are_per_session_and_tenant(store: Store) -> None:
    one, two = await store.add_session(session(A)), await store.add_session(session(A))
    await store.append_messages(one, [("user", '"1"')])
    await store.append_messages(two, [("user", '"2"')])
    await store.append_events(two, [("lifecycle", "{}")])
    assert [m.content for m in await store.list_messages(A, two.id)] == ['"2"']
    assert [m.sequence for m in await store.list_messages(A, two.id)] == [1]
    assert await store.list_messages(B, one.id) == []
    assert await store.list_events(B, two.id) == []


async def test_usage_records_and_turn_events_share_one_timeline(store: Store) -> None:
    owner = await store.add_session(session(A))
    await store.append_events(owner, [("lifecycle", '{"action": "created"}')])
    await store.record_usage(A, owner.id, "helper", "claude-x", [("input_tokens", 10), ("message", 1)], '{"n": 1}')
    await store.record_message(owner, "assistant", "{}", [("text", '"x"')])
    await store.record_usage(A, owner.id, "helper", "claude-x", [("output_tokens", 5)], '{"n": 2}')
    events = await store.list_events(A, owner.id)
    # Usage is a lifecycle event (the reference's types have no `usage`; tests/e2e/test_ash_sdk_contract.py).
    assert [(e.sequence, e.type) for e in events] == [(1, "lifecycle"), (2, "lifecycle"), (3, "text"), (4, "lifecycle")]
    assert [e.data for e in events if e.type == "lifecycle"][1:] == ['{"n": 1}', '{"n": 2}']
    usage = await store.list_usage(A, UsageFilter(session_id=owner.id))
    assert sorted((u.event_type, u.value) for u in usage) == [
        ("input_tokens", 10),
        ("message", 1),
        ("output_tokens", 5),
    ]
    assert await store.list_usage(B, UsageFilter(session_id=owner.id)) == []
    totals = await store.usage_totals(A, UsageFilter(agent_name="helper"))
    assert sorted(totals) == [
        ("claude-x", "input_tokens", 10),
        ("claude-x", "message", 1),
        ("claude-x", "output_tokens", 5),
    ]
    assert await store.usage_totals(B) == []


async def test_a_failed_write_gives_its_sequence_back(store: Store) -> None:
    owner = await store.add_session(session(A))
    with pytest.raises(Exception):  # noqa: B017 - the engines raise different IntegrityErrors for NOT NULL
        await store.append_messages(owner, [("user", None)])  # type: ignore[list-item]
    assert [m.sequence for m in await store.append_messages(owner, [("user", '"x"')])] == [1]


async def test_writing_to_a_missing_session_is_not_found(store: Store) -> None:
    ghost = session(A)
    ghost.id = uuid.uuid4()
    with pytest.raises(NotFound):
        await store.record_message(ghost, "user", "{}", [])
    with pytest.raises(NotFound):
        await store.record_usage(A, ghost.id, "helper", "m", [("message", 1)], "{}")


async def test_concurrent_writers_in_one_process_take_turns(store: Store) -> None:
    owner = await store.add_session(session(A))

    async def writer(n: int) -> None:
        for i in range(5):
            if i % 2:
                await store.record_message(owner, "assistant", json.dumps([n, i]), [("text", "{}")])
            else:
                await store.append_messages(owner, [("user", json.dumps([n, i]))])
            await store.record_usage(A, owner.id, "helper", "m", [("message", 1)], "{}")

    await asyncio.gather(*(writer(n) for n in range(20)))
    messages = await store.list_messages(A, owner.id, limit=1000)
    assert [m.sequence for m in messages] == list(range(1, 101))
    for n in range(20):  # each writer's own messages are in its order
        assert [json.loads(m.content)[1] for m in messages if json.loads(m.content)[0] == n] == list(range(5))
    events = await store.list_events(A, owner.id, limit=1000)
    assert [e.sequence for e in events] == list(range(1, 141))


# -- Stream frames ------------------------------------------------------------------------------------------------


async def test_stream_frames_replay_by_sequence_and_turn(store: Store) -> None:
    owner = await store.add_session(session(A))
    assert await store.last_stream_seq(owner.id) == 0
    assert await store.last_turn_start(owner.id) is None
    frames = [
        {"session_id": owner.id, "seq": seq, "turn_id": turn, "event": "message", "data": "{}", "partial": seq == 2}
        for seq, turn in [(1, "t1"), (2, "t1"), (3, "t1"), (4, "t2"), (5, "t2")]
    ]
    await store.append_stream_events(frames)
    assert await store.last_stream_seq(owner.id) == 5
    assert await store.last_turn_start(owner.id) == 4
    assert [f.seq for f in await store.stream_events_after(owner.id, 1, before=5)] == [2, 3, 4]
    assert [f.partial for f in await store.stream_events_after(owner.id, 0, limit=3)] == [False, True, False]


# -- Credentials --------------------------------------------------------------------------------------------------


async def test_credentials_are_per_tenant(store: Store) -> None:
    def credential(tenant: str) -> Credential:
        return Credential(
            tenant_id=tenant, type="anthropic", hint="sk-ant-…abcd", secret="v1.sealed", created_at=utcnow()
        )

    mine = await store.add_credential(credential(A))
    theirs = await store.add_credential(credential(B))
    assert await store.get_credential(B, mine.id) is None
    assert [c.id for c in await store.list_credentials(A)] == [mine.id]
    assert not await store.delete_credential(B, mine.id)
    assert await store.get_credential(A, mine.id) is not None
    when = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    await store.touch_credential(mine.id, when)
    touched = await store.get_credential(A, mine.id)
    assert touched is not None and touched.last_used_at == when
    assert await store.delete_credential(A, mine.id)
    assert [c.id for c in await store.list_credentials(B)] == [theirs.id]
