"""The pool's rows in the `sandboxes` table, written in order and off the caller's path: a turn never waits for the
pool's bookkeeping (on SQLite such a write would contend with the turn's own)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from ..states import SandboxState
from ..store.repository import Store
from ..store.sandboxes import SandboxChanges

log = logging.getLogger(__name__)


class PoolRowWriter:
    def __init__(self, store: Store, server_id: str) -> None:
        self._store = store
        self._server_id = server_id
        self._writes: asyncio.Queue[tuple[str, str, SandboxChanges]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        # This server's cold rows (sessions whose sandbox is gone, files persisted), recounted after each change.
        self.cold = 0

    def write(self, sandbox_id: str, values: SandboxChanges | None) -> None:
        """Update (or, with None, delete) a row, in order after the changes so far."""
        self._writes.put_nowait(("update" if values is not None else "delete", sandbox_id, values or {}))
        self._ensure_writer()

    def drop_cold_rows(self, session_id: str) -> None:
        """The session has a sandbox again: the cold rows that stood for it (on any server) go."""
        self._writes.put_nowait(("drop_cold", session_id, {}))
        self._ensure_writer()

    async def recount(self) -> int:
        self.cold = await self._store.count_sandboxes(self._server_id, SandboxState.COLD)
        return self.cold

    async def flush(self) -> None:
        """Wait until every row change so far is in the database."""
        self._ensure_writer()
        await self._writes.join()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_rows())

    async def _write_rows(self) -> None:
        while True:
            op, key, values = await self._writes.get()
            try:
                if op == "delete":
                    await self._store.delete_sandbox(key)
                elif op == "drop_cold":
                    await self._store.delete_cold_sandboxes(uuid.UUID(key))
                else:
                    await self._store.update_sandbox(key, **values)
                if op != "update" or values.get("state") == SandboxState.COLD:
                    await self.recount()
            except Exception:
                log.exception("writing the pool row of %s failed", key)
            finally:
                self._writes.task_done()
