"""The engine and session factory, waiting for the database at start, and schema migrations under a lock."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Errors that retrying does not fix: fail at once instead of after the whole start-up wait.
PERMANENT_ERRORS = frozenset(
    {"InvalidPasswordError", "InvalidAuthorizationSpecificationError", "InvalidCatalogNameError"}
)
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """Connection pool of a server-based database (PostgreSQL); SQLite ignores them."""

    size: int = 10
    max_overflow: int = 10
    timeout_s: float = 30.0


class DatabaseUnavailable(Exception):
    """The database could not be reached at start; the message says where and why, never the password."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. NORMAL: survives a process kill (not a power cut) at a fraction of
    # FULL's fsync cost. foreign_keys: SQLite leaves cascades off per connection unless asked.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str, pool: PoolOptions | None = None) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    pool = pool or PoolOptions()
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_s,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _is_permanent(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in PERMANENT_ERRORS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__


async def wait_for_database(url: str, *, timeout_s: float) -> None:
    """Connect, retrying with exponential backoff for up to `timeout_s` (a database that is still starting, a
    network not up yet); then raise DatabaseUnavailable saying why. Wrong credentials or database fail at once."""
    if is_sqlite(url):
        return
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": max(1.0, min(10.0, remaining))})
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            if attempt > 1:
                log.info("database %s is reachable (attempt %d)", redacted(url), attempt)
            return
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            remaining = deadline - time.monotonic()
            if _is_permanent(exc) or remaining <= 0:
                waited = "" if _is_permanent(exc) else f" after trying for {timeout_s:g} s"
                raise DatabaseUnavailable(
                    f"cannot connect to the database {redacted(url)}{waited}: {_reason(exc)} "
                    "(check ASH_DATABASE_URL and that the database is up; ASH_DATABASE_STARTUP_TIMEOUT_MS sets "
                    "how long the server waits)"
                ) from exc
            log.warning("database %s is not reachable yet (%s); retrying in %.1f s", redacted(url), _reason(exc), delay)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_BACKOFF_S)
        finally:
            await engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextlib.contextmanager
def _sqlite_migration_lock(url: str) -> Iterator[None]:
    """Two servers starting on one SQLite file take turns to migrate it (PostgreSQL uses an advisory lock, taken
    in migrations/env.py). A separate lock file: SQLite's own locks on the database file must stay its own."""
    database = make_url(url).database
    if not is_sqlite(url) or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def upgrade(url: str) -> list[str]:
    """Upgrade the schema to the newest revision; returns the revisions this call applied (none if another server
    got there first). Synchronous: Alembic's env runs its own event loop."""
    config = alembic_config(url)
    applied: list[str] = []
    config.attributes["applied"] = applied
    with _sqlite_migration_lock(url):
        command.upgrade(config, "head")
    return applied


async def migrate(url: str) -> list[str]:
    # Alembic's env runs its own event loop, so it must not run on the server's loop thread.
    return await asyncio.to_thread(upgrade, url)


def count_statements(engines: Sequence[Engine], statement: Callable[[], None], commit: Callable[[], None]) -> None:
    """Call `statement` for every SQL statement the engines send and `commit` for every commit (/metrics counts
    them: what a turn costs the database, measured where it runs). `Store.sync_engines()` lists them."""
    for engine in engines:
        event.listen(engine, "before_cursor_execute", lambda *_: statement())
        event.listen(engine, "commit", lambda *_: commit())
