"""Stored credentials: sealed at rest, bound to their tenant and row, scoped by tenant in every query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from ash_server.credentials import CredentialCipher, CredentialService, mask
from ash_server.errors import Invalid, NotConfigured, NotFound
from ash_server.store.database import create_engine, migrate
from ash_server.store.repository import Store

KEY = "sk-ant-api03-" + "k" * 40 + "TAIL"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ash.db'}"
    await migrate(url)
    store = Store(create_engine(url))
    yield store
    await store.close()


def test_cipher_round_trip_and_binding() -> None:
    cipher = CredentialCipher(b"a master key of enough length")
    cid = uuid.uuid4()
    sealed = cipher.seal(KEY, "tenant-a", cid)
    assert KEY not in sealed and sealed.startswith("v1.")
    assert cipher.seal(KEY, "tenant-a", cid) != sealed  # a fresh nonce every time
    assert cipher.open(sealed, "tenant-a", cid) == KEY
    with pytest.raises(ValueError):
        cipher.open(sealed, "tenant-b", cid)  # moved to another tenant
    with pytest.raises(ValueError):
        cipher.open(sealed, "tenant-a", uuid.uuid4())  # moved to another row
    with pytest.raises(ValueError):
        CredentialCipher(b"another master key, also long").open(sealed, "tenant-a", cid)


def test_mask() -> None:
    assert mask(KEY) == "sk-ant-…TAIL"
    assert mask("short") == "…"
    assert mask("x" * 20 + "abcd") == "…abcd"


async def test_service_is_tenant_scoped(store: Store, tmp_path: Path) -> None:
    service = CredentialService(store, CredentialCipher(b"a master key of enough length"))
    mine = await service.create("tenant-a", "anthropic", KEY, "prod")
    await service.create("tenant-b", "custom", "b-token-0123456789abcdef", None)
    assert [c.id for c in await service.list("tenant-a")] == [mine.id]
    assert mine.hint == "sk-ant-…TAIL" and mine.secret != KEY
    with pytest.raises(NotFound):
        await service.get("tenant-b", str(mine.id))
    with pytest.raises(NotFound):
        await service.upstream_auth("tenant-b", str(mine.id))
    with pytest.raises(NotFound):
        await service.delete("tenant-b", str(mine.id))
    with pytest.raises(NotFound):
        await service.get("tenant-a", "not-a-uuid")
    auth = await service.upstream_auth("tenant-a", str(mine.id))
    assert (auth.header, auth.value, auth.credential_id) == ("x-api-key", KEY, str(mine.id))
    assert KEY not in repr(auth)
    assert (await service.get("tenant-a", str(mine.id))).last_used_at is not None
    custom = (await service.list("tenant-b"))[0]
    assert (await service.upstream_auth("tenant-b", str(custom.id))).header == "authorization"
    await service.delete("tenant-a", str(mine.id))
    assert await service.list("tenant-a") == []
    await store.close()
    assert KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("ash.db*"))


async def test_unusable_types_and_missing_key(store: Store) -> None:
    service = CredentialService(store, CredentialCipher(b"a master key of enough length"))
    bedrock = await service.create("default", "bedrock", "AKIA0123456789abcdef", None)
    with pytest.raises(Invalid, match="bedrock"):
        await service.upstream_auth("default", str(bedrock.id))
    with pytest.raises(Invalid):
        await service.create("default", "azure", KEY, None)
    with pytest.raises(Invalid):
        await service.create("default", "anthropic", "two\nlines", None)
    # Without ASH_CREDENTIAL_KEY: nothing is stored, and what was stored cannot be used.
    unkeyed = CredentialService(store, None)
    with pytest.raises(NotConfigured, match="ASH_CREDENTIAL_KEY"):
        await unkeyed.create("default", "anthropic", KEY, None)
    stored = await service.create("default", "anthropic", KEY, None)
    with pytest.raises(NotConfigured):
        await unkeyed.upstream_auth("default", str(stored.id))
    rekeyed = CredentialService(store, CredentialCipher(b"the key was changed since then"))
    with pytest.raises(NotConfigured, match="changed"):
        await rekeyed.upstream_auth("default", str(stored.id))


def test_placeholder_credential_key_is_refused() -> None:
    from ash_server.settings import Settings

    with pytest.raises(ValueError):
        Settings(credential_key=SecretStr("changeme"))
