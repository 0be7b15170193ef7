"""The Unix sockets the gateways listen on, one per sandbox, and the connections each holds open: closing a sandbox's
socket also cuts its connections in flight, so nothing it started outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class SandboxSockets:
    def __init__(self) -> None:
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self._connections: dict[str, set[asyncio.Task[None]]] = {}

    async def open(
        self, sandbox_id: str, handler: Handler, path: Path, owner: tuple[int, int] | None, *, limit: int
    ) -> None:
        """Listen on `path` for the sandbox: mode 0600, owned by the sandbox user (`owner`) when it has one."""
        server = await asyncio.start_unix_server(handler, path=str(path), limit=limit)
        os.chmod(path, 0o600)
        if owner is not None:
            os.chown(path, *owner)
        self._servers[sandbox_id] = server
        self._connections[sandbox_id] = set()

    async def close(self, sandbox_id: str) -> None:
        server = self._servers.pop(sandbox_id, None)
        if server is not None:
            server.close()
        tasks = self._connections.pop(sandbox_id, set())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def sandbox_ids(self) -> list[str]:
        return list(self._servers)

    @contextlib.contextmanager
    def connection(self, sandbox_id: str) -> Iterator[bool]:
        """Track the current task as one of the sandbox's connections while the block runs; yields False (and tracks
        nothing) when the sandbox's socket is already closed, so the caller drops the connection."""
        task = asyncio.current_task()
        tracked = self._connections.get(sandbox_id)
        if task is None or tracked is None:
            yield False
            return
        tracked.add(task)
        try:
            yield True
        finally:
            tracked.discard(task)
