"""SQLite's hot-path transactions in one thread hop.

aiosqlite runs every statement, and the begin, commit and rollback around them, as a separate hop to its
connection's thread and back: a turn's write of three statements cost six hops, each a wake-up of the event loop.
Measured here (bench/README, 2026-12-04): 1.4 ms of CPU and 3 ms of wall time per such transaction, against
0.6 ms and 1 ms for the same transaction run whole in a thread on a synchronous connection. So on a file SQLite
database, the store sends the few transactions every turn makes (its session read, its start and its end) to
`OneHop`: a synchronous engine on the same file, with the same pragmas, used only from its own two threads. The
event loop waits on one future per transaction; nothing blocks it. PostgreSQL (asyncpg) has no hops to save and
keeps the async path for everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from .database import sqlite_pragmas

T = TypeVar("T")
# One thread writes while the other reads: SQLite takes one writer at a time anyway (WAL lets readers run beside).
THREADS = 2


class OneHop:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="ash-sqlite")

    @classmethod
    def beside(cls, engine: AsyncEngine) -> OneHop | None:
        """A synchronous twin of `engine` if it is a file SQLite database (an in-memory one cannot be shared)."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        sync = create_engine(
            url.set(drivername="sqlite"),
            connect_args={"check_same_thread": False},  # a connection moves between the pool's two threads
            pool_size=THREADS,
            max_overflow=0,
        )
        event.listen(sync, "connect", sqlite_pragmas)
        return cls(sync)

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work` with an ORM session of its own, in one of the hop's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._call, work)

    def _call(self, work: Callable[[Session], T]) -> T:
        with self._sessions() as session:
            return work(session)

    async def close(self) -> None:
        await asyncio.to_thread(self._threads.shutdown, True)
        self.engine.dispose()
