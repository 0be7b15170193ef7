"""Alembic environment. Run through ash_server.store.database.migrate(), never at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ash_server.store.schema import Base

log = logging.getLogger("ash_server.store.migrations")

config = context.config
target_metadata = Base.metadata
# pg_advisory_xact_lock key ("ashmigr" in ASCII): servers starting together on one PostgreSQL database migrate
# one at a time; the others then find the schema at head and apply nothing.
MIGRATION_LOCK_KEY = 0x61_73_68_6D_69_67_72


def _applied(ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]) -> None:
    if not step.is_upgrade:
        log.info("reverted migration %s", step.up_revision_id)
        return
    log.info("applied migration %s: %s", step.up_revision_id, getattr(step.up_revision, "doc", ""))
    applied = config.attributes.get("applied")
    if isinstance(applied, list):
        applied.append(str(step.up_revision_id))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=_applied,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until this transaction commits; PostgreSQL migrations run in one transaction (DDL included),
            # so the next server reads alembic_version only after this one's changes are committed.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
