"""The store's tests run on both engines: every test that takes `database_url` (or `store`) runs once on SQLite and
once on a real PostgreSQL, each time on a fresh database at the newest schema."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ash_server.store.database import create_engine, upgrade
from ash_server.store.repository import Store
from tests.support.postgres import PostgresCluster, asyncpg_url

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("template") / "ash.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster) -> str:
    """A migrated PostgreSQL database; each test gets a copy (CREATE DATABASE ... TEMPLATE)."""
    url = postgres.database()
    upgrade(asyncpg_url(url))
    return url.rsplit("/", 1)[1]


def fresh_database(request: pytest.FixtureRequest, engine: str, tmp_path: Path) -> str:
    if engine == "sqlite":
        target = tmp_path / "ash.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite+aiosqlite:///{target}"
    postgres: PostgresCluster = request.getfixturevalue("postgres")
    return asyncpg_url(postgres.database(template=request.getfixturevalue("postgres_template")))


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database at the newest schema, as the SQLAlchemy URL the server would use."""
    return fresh_database(request, request.param, tmp_path)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(create_engine(database_url))
    try:
        yield store
    finally:
        await store.close()
