"""API keys, tenants and model credentials: what authenticates a request and what it may spend."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from .base import StoreBase
from .models import (
    ApiKey,
    Credential,
    KeyRevision,
    Tenant,
)

# The one row of `key_revisions` (the migration creates it).
KEY_REVISION_ROW = 1


class KeyQueries(StoreBase):
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
            # In the revoking transaction: no server can see the revocation without seeing the new version.
            await db.execute(
                update(KeyRevision)
                .where(KeyRevision.id == KEY_REVISION_ROW)
                .values(version=KeyRevision.version + 1)
                .execution_options(synchronize_session=False)
            )
        return await self.get_api_key(tenant_id, key_id)

    async def key_revision(self) -> int:
        """How many revocations there have been: a changed number tells a server to drop its cached keys."""
        query = select(KeyRevision.version).where(KeyRevision.id == KEY_REVISION_ROW)
        version: int | None = await self._run(lambda db: db.scalar(query))
        return int(version or 0)

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
