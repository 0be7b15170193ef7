"""Migrations build exactly the schema the models describe, on SQLite and on PostgreSQL, and servers starting
together migrate once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ash_server.store.database import alembic_config, create_engine
from tests.support.postgres import PostgresCluster, asyncpg_url
from tests.support.server import REPO

UPGRADE = "import json, sys; from ash_server.store.database import upgrade; print(json.dumps(upgrade(sys.argv[1])))"


def empty_database(engine: str, tmp_path: Path, postgres: PostgresCluster | None) -> str:
    if engine == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ash.db'}"
    assert postgres is not None
    return asyncpg_url(postgres.database())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    return empty_database(request.param, tmp_path, postgres)


def test_schema_matches_the_models(empty_url: str) -> None:
    config = alembic_config(empty_url)
    command.upgrade(config, "head")
    command.check(config)  # raises if autogenerate would emit anything: models and migrations agree


def test_downgrade_to_empty_and_back(empty_url: str) -> None:
    config = alembic_config(empty_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)


def test_the_chain_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1


def test_concurrent_upgrades_apply_each_migration_once(empty_url: str) -> None:
    """What servers starting together on an empty database do (advisory lock on PostgreSQL, a file lock on
    SQLite): every revision is applied by exactly one of them, and none fails. Processes, as servers are."""
    processes = [
        subprocess.Popen([sys.executable, "-c", UPGRADE, empty_url], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4
    head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    applied = [revision for result in results for revision in result]
    assert sorted(applied) == sorted(set(applied)) and head in applied
    assert sum(1 for result in results if result) == 1  # one did all the work, the others found it done


async def _backfill_check(url: str) -> None:
    engine = create_engine(url)
    session_id = uuid.uuid4().hex if url.startswith("sqlite") else str(uuid.uuid4())
    try:
        async with engine.begin() as db:
            await db.execute(
                text(
                    "INSERT INTO sessions (id, tenant_id, agent_name, agent_version, sandbox_id, status, config,"
                    " created_at, last_active_at)"
                    " VALUES (:id, 'default', 'a', 1, '', 'paused', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": session_id},
            )
            for seq in (1, 2, 3):
                await db.execute(
                    text(
                        "INSERT INTO messages (id, session_id, tenant_id, role, content, sequence, created_at)"
                        " VALUES (:id, :sid, 'default', 'user', '{}', :seq, CURRENT_TIMESTAMP)"
                    ),
                    {
                        "id": uuid.uuid4().hex if url.startswith("sqlite") else str(uuid.uuid4()),
                        "sid": session_id,
                        "seq": seq,
                    },
                )
    finally:
        await engine.dispose()


async def _counters(url: str) -> tuple[int, int, list[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as db:
            row = (await db.execute(text("SELECT last_message_seq, last_event_seq FROM sessions"))).one()
            tenants = [r[0] for r in (await db.execute(text("SELECT id FROM tenants"))).all()]
            return int(row[0]), int(row[1]), tenants
    finally:
        await engine.dispose()


def test_sequence_counters_start_where_existing_rows_are(empty_url: str) -> None:
    config = alembic_config(empty_url)
    command.upgrade(config, "0003")
    asyncio.run(_backfill_check(empty_url))
    command.upgrade(config, "head")
    assert asyncio.run(_counters(empty_url)) == (3, 0, ["default"])


async def _agent_with_bundle(url: str) -> str:
    engine = create_engine(url)
    agent_id = uuid.uuid4().hex if url.startswith("sqlite") else str(uuid.uuid4())
    try:
        async with engine.begin() as db:
            await db.execute(
                text(
                    "INSERT INTO agents (id, tenant_id, name, version, path, managed, env, config, created_at,"
                    " updated_at) VALUES (:id, 't1', 'helper', 3, '/x', true, '{}', '{}', CURRENT_TIMESTAMP,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"id": agent_id},
            )
            await db.execute(
                text(
                    "INSERT INTO agent_bundles (agent_id, version, archive, size, sha256)"
                    " VALUES (:id, 3, :archive, 5, 'abc')"
                ),
                {"id": agent_id, "archive": b"files"},
            )
    finally:
        await engine.dispose()
    return agent_id


async def _versions(url: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as db:
            rows = await db.execute(
                text(
                    "SELECT tenant_id, agent_name, version_number, name, is_active, archive, sha256 FROM agent_versions"
                )
            )
            return [tuple(row) for row in rows.all()]
    finally:
        await engine.dispose()


def test_each_agent_s_current_files_become_its_active_version(empty_url: str) -> None:
    """0012 replaces agent_bundles (the current files only) by agent_versions: what sessions run today is kept,
    under the number they carry, and a downgrade gives it back."""
    config = alembic_config(empty_url)
    command.upgrade(config, "0011")
    asyncio.run(_agent_with_bundle(empty_url))
    command.upgrade(config, "head")
    assert asyncio.run(_versions(empty_url)) == [("t1", "helper", 3, "v3", True, b"files", "abc")]
    command.downgrade(config, "0011")
    command.upgrade(config, "head")
    assert [row[2:6] for row in asyncio.run(_versions(empty_url))] == [(3, "v3", True, b"files")]
