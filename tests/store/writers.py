"""Concurrent writers for test_sequences.py, run as a process of its own: `python -m tests.store.writers URL
SESSION FIRST COUNT EACH`. Every writer has its own engine (its own connection), so the race is a real one between
database connections, not between tasks sharing a lock. Prints `ready`, waits for a line on stdin, then writes."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

from ash_server.store.database import PoolOptions, create_engine
from ash_server.store.models import SessionRow
from ash_server.store.repository import Store

TENANT = "default"


async def write(store: Store, session: SessionRow, writer: int, each: int) -> None:
    for i in range(each):
        content = json.dumps({"writer": writer, "i": i})
        if i % 2:
            await store.record_message(session, "assistant", content, [("text", content), ("tool_use", content)])
        else:
            await store.append_messages(session, [("user", content)])
        if i % 3 == 0:
            await store.record_usage(TENANT, session.id, "helper", "claude-x", [("message", 1)], content)


async def main(url: str, session_id: str, first: int, count: int, each: int) -> None:
    stores = [Store(create_engine(url, PoolOptions(size=1, max_overflow=0))) for _ in range(count)]
    session = SessionRow(id=uuid.UUID(session_id), tenant_id=TENANT, agent_name="helper")
    for store in stores:  # connect before the start signal, so the writers start together
        async with store.engine.connect():
            pass
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    try:
        await asyncio.gather(*(write(store, session, first + n, each) for n, store in enumerate(stores)))
    finally:
        for store in stores:
            await store.close()


if __name__ == "__main__":
    url, session_id, first, count, each = sys.argv[1:6]
    asyncio.run(main(url, session_id, int(first), int(count), int(each)))
