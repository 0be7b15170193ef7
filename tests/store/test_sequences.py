"""Per-session sequences under real concurrency: 20 writers in 4 processes, each writer on its own connection,
appending to one session's messages and timeline at once. Sequences come out 1..N: none duplicated, none lost,
no gaps, and each writer's rows in its own order."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from ash_server.store.database import create_engine
from ash_server.store.models import SessionRow, utcnow
from ash_server.store.repository import Store
from tests.store.writers import TENANT
from tests.support.server import REPO

PROCESSES, WRITERS_EACH, ROWS_EACH = 4, 5, 10
WRITERS = PROCESSES * WRITERS_EACH


async def new_session(url: str) -> str:
    store = Store(create_engine(url))
    try:
        now = utcnow()
        session = await store.add_session(
            SessionRow(tenant_id=TENANT, agent_name="helper", agent_version=1, created_at=now, last_active_at=now)
        )
        return str(session.id)
    finally:
        await store.close()


async def read_back(url: str, session_id: str) -> tuple[list[tuple[int, dict[str, int]]], list[int]]:
    store = Store(create_engine(url))
    try:
        sid = uuid.UUID(session_id)
        messages = await store.list_messages(TENANT, sid, limit=1000)
        events = await store.list_events(TENANT, sid, limit=1000)
        return [(m.sequence, json.loads(m.content)) for m in messages], [e.sequence for e in events]
    finally:
        await store.close()


def test_twenty_writers_in_four_processes_get_sequences_one_to_n(database_url: str) -> None:
    session_id = asyncio.run(new_session(database_url))
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.store.writers", database_url, session_id),
                *(str(p * WRITERS_EACH), str(WRITERS_EACH), str(ROWS_EACH)),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    try:
        for process in processes:  # every writer connected: now let them all go at once
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            _, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()

    messages, events = asyncio.run(read_back(database_url, session_id))
    assert [seq for seq, _ in messages] == list(range(1, WRITERS * ROWS_EACH + 1))
    for writer in range(WRITERS):
        assert [row["i"] for _, row in messages if row["writer"] == writer] == list(range(ROWS_EACH))
    # Per writer: 2 events for each of its 5 assistant messages, 1 usage event for rows 0, 3, 6, 9.
    assert events == list(range(1, WRITERS * (2 * ROWS_EACH // 2 + 4) + 1))
