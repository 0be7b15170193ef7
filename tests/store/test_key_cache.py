"""Verified API keys are cached per process and the cache follows revocations everywhere: two servers (two engines on
one database, both engines) authenticate without a query per request, and a key revoked on one stops working on the
other once its revision check is due, never later. The clock of the revision check is a fake one, so the test says
what happens at each instant instead of sleeping."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from ash_server.auth import REVISION_CHECK_S, Authenticator, CachedKey, VerifiedKeys
from ash_server.errors import Unauthorized
from ash_server.store.database import create_engine
from ash_server.store.models import DEFAULT_TENANT, Tenant, utcnow
from ash_server.store.repository import Store

SECRET = b"0" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def second_store(database_url: str) -> AsyncIterator[Store]:
    """Another server's store: its own engine and connections on the same database."""
    store = Store(create_engine(database_url))
    try:
        yield store
    finally:
        await store.close()


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store's engines send while the block runs (store/one_hop.py's too, on SQLite)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    for engine in store.sync_engines():
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in store.sync_engines():
            event.remove(engine, "before_cursor_execute", record)


def authenticator(store: Store, clock: Clock) -> Authenticator:
    return Authenticator(store, SECRET, verified=VerifiedKeys(store.key_revision, clock=clock))


async def two_keys(auth: Authenticator, store: Store) -> tuple[uuid.UUID, str, str]:
    await store.add_tenant(Tenant(id=DEFAULT_TENANT, label="default", created_at=utcnow()))
    revoked, revoked_plain = await auth.create_key(DEFAULT_TENANT, label="to revoke")
    _, kept_plain = await auth.create_key(DEFAULT_TENANT, label="kept")
    return revoked.id, revoked_plain, kept_plain


async def test_a_verified_key_costs_no_query_until_the_revision_check_is_due(store: Store) -> None:
    clock = Clock()
    auth = authenticator(store, clock)
    _, plaintext, _ = await two_keys(auth, store)
    with statements(store) as first:
        await auth.authenticate(f"Bearer {plaintext}")
    assert any("key_revisions" in s for s in first) and any("api_keys" in s for s in first), first
    with statements(store) as cached:
        for _ in range(50):
            principal = await auth.authenticate(f"Bearer {plaintext}")
    assert cached == [] and principal.tenant_id == DEFAULT_TENANT
    clock.now += REVISION_CHECK_S
    with statements(store) as due:
        await auth.authenticate(f"Bearer {plaintext}")
    assert len(due) == 1 and "key_revisions" in due[0], due  # the revision, not the key


async def test_a_key_revoked_on_one_server_fails_on_the_other_at_its_next_revision_check(
    store: Store, second_store: Store
) -> None:
    clock = Clock()
    here, there = authenticator(store, clock), authenticator(second_store, clock)
    key_id, revoked_plain, kept_plain = await two_keys(here, store)
    for auth in (here, there):
        for plaintext in (revoked_plain, kept_plain):
            await auth.authenticate(f"Bearer {plaintext}")
    assert len(there.verified) == 2

    await here.revoke_key(DEFAULT_TENANT, key_id)
    with pytest.raises(Unauthorized):
        await here.authenticate(f"Bearer {revoked_plain}")  # at once where it was revoked
    await there.authenticate(f"Bearer {revoked_plain}")  # the other server's check is not due yet

    clock.now += REVISION_CHECK_S
    with pytest.raises(Unauthorized):
        await there.authenticate(f"Bearer {revoked_plain}")
    assert (await there.authenticate(f"Bearer {kept_plain}")).tenant_id == DEFAULT_TENANT
    with pytest.raises(Unauthorized):
        await there.authenticate(f"Bearer {revoked_plain}")  # revoked keys are never cached


async def test_a_key_read_before_a_revocation_is_not_cached_past_it(store: Store, second_store: Store) -> None:
    """A lookup that started under the old revision must not put its key into a cache that has seen the new one."""
    clock = Clock()
    here, there = authenticator(store, clock), authenticator(second_store, clock)
    key_id, revoked_plain, _ = await two_keys(here, store)
    before = await there.verified.revision()
    stale = await second_store.find_api_key(there.hash(revoked_plain))
    assert stale is not None and stale.revoked_at is None
    await here.revoke_key(DEFAULT_TENANT, key_id)
    clock.now += REVISION_CHECK_S
    after = await there.verified.revision()
    assert before is not None and after == before + 1
    there.verified.put(
        there.hash(revoked_plain),
        CachedKey(id=stale.id, tenant_id=stale.tenant_id, expires_at=None, last_used_at=None),
        before,
    )
    assert there.verified.get(there.hash(revoked_plain)) is None
    with pytest.raises(Unauthorized):
        await there.authenticate(f"Bearer {revoked_plain}")


async def test_the_cache_is_bounded(store: Store) -> None:
    clock = Clock()
    auth = Authenticator(store, SECRET, verified=VerifiedKeys(store.key_revision, clock=clock, max_keys=3))
    await store.add_tenant(Tenant(id=DEFAULT_TENANT, label="default", created_at=utcnow()))
    keys = [(await auth.create_key(DEFAULT_TENANT))[1] for _ in range(7)]
    for plaintext in keys:
        await auth.authenticate(f"Bearer {plaintext}")
        assert len(auth.verified) <= 3
