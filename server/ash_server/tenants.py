"""Tenants: created on the server host by `ash admin create-tenant`, never through an unauthenticated route.

A tenant's id names its folders (`agents/<tenant>/`, `sessions/<tenant>/`, `sandboxes/<tenant>/`), so it is short
and path-safe: lower-case letters, digits, `-` and `_`, at most 32 characters (Unix socket paths under
`sandboxes/<tenant>/<id>/` must stay under 108 bytes).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from .auth import Authenticator, load_secret
from .errors import Conflict, Invalid, NotFound
from .paths import DataDir
from .settings import Settings
from .store.database import PoolOptions, create_engine, migrate, wait_for_database
from .store.models import ApiKey, Tenant, utcnow
from .store.repository import Store

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def validate_tenant_id(raw: str) -> str:
    if not TENANT_RE.fullmatch(raw):
        raise Invalid(
            f"invalid tenant name {raw!r}: use 1-32 lower-case letters, digits, '-' or '_', starting with a letter "
            "or digit",
            tenant=raw,
        )
    return raw


@dataclass(frozen=True, slots=True)
class NewKey:
    tenant: Tenant
    key: ApiKey
    plaintext: str


async def create_tenant(store: Store, auth: Authenticator, tenant_id: str, *, label: str | None = None) -> NewKey:
    """Register a tenant and give it its first API key (the plaintext is returned once, never stored)."""
    tenant = Tenant(id=validate_tenant_id(tenant_id), label=label, created_at=utcnow())
    if not await store.add_tenant(tenant):
        raise Conflict(
            f"tenant {tenant_id!r} exists already (`ash admin create-key {tenant_id}` gives it another key)",
            tenant=tenant_id,
        )
    key, plaintext = await auth.create_key(tenant.id, label="first key (ash admin create-tenant)")
    return NewKey(tenant, key, plaintext)


async def create_key(
    store: Store, auth: Authenticator, tenant_id: str, *, label: str | None = None, expires_at: datetime | None = None
) -> NewKey:
    """Another key for an existing tenant: the way back in for a tenant that lost or revoked its keys."""
    tenant = await store.get_tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r} (`ash admin create-tenant {tenant_id}` creates it)", tenant=tenant_id)
    key, plaintext = await auth.create_key(tenant.id, label=label or "ash admin create-key", expires_at=expires_at)
    return NewKey(tenant, key, plaintext)


@asynccontextmanager
async def admin_store(settings: Settings) -> AsyncIterator[tuple[Store, Authenticator]]:
    """The server's database and key hashing, opened directly on the server host (what `ash admin` uses): the
    same data dir, database URL and server secret as the server, the schema migrated as the server would."""
    DataDir(settings.data_dir).prepare()
    url = settings.effective_database_url
    if not settings.database_url:
        db = settings.data_dir / "ash.db"
        if not db.exists():
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    await wait_for_database(url, timeout_s=settings.database_startup_timeout_ms / 1000)
    await migrate(url)
    store = Store(create_engine(url, PoolOptions(size=1, max_overflow=1)))
    try:
        yield store, Authenticator(store, load_secret(settings))
    finally:
        await store.close()
