"""Every query the hot path makes is answered through an index, on both engines: the statements the store really
sends are captured and EXPLAINed. SQLite: no `SCAN` (of a table or of a whole index), which also proves an index
leads with the filtered columns. PostgreSQL: no `Seq Scan` and no index read without a condition, with sequential
scans made as unattractive as they can be (on tiny tables the planner would rightly prefer them). PostgreSQL may
still walk an index on a non-leading column, so the SQLite check is the one that pins the indexes' shape."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from ash_server.store.models import Agent, ApiKey, SessionRow, utcnow
from ash_server.store.repository import Store
from ash_server.store.timeline import TurnMessage
from ash_server.store.usage import UsageFilter

TENANT = "default"


async def hot_path(store: Store) -> None:
    """What requests and turns do, at least once each."""
    now = utcnow()
    key = await store.add_api_key(ApiKey(tenant_id=TENANT, key_hash="a" * 64, prefix="ash_", created_at=now))
    await store.save_agent(
        Agent(tenant_id=TENANT, name="helper", version=1, path="/x", env={}, config={}, created_at=now, updated_at=now)
    )
    session = await store.add_session(
        SessionRow(tenant_id=TENANT, agent_name="helper", agent_version=1, created_at=now, last_active_at=now)
    )
    sid = session.id
    # Authentication, then what the routes read.
    await store.find_api_key("a" * 64)
    await store.touch_api_key(key.id, now)
    await store.get_api_key(TENANT, key.id)
    await store.list_api_keys(TENANT)
    await store.count_usable_api_keys(TENANT, now)
    await store.get_agent(TENANT, "helper")
    await store.list_agents(TENANT)
    await store.get_session(TENANT, sid)
    await store.list_sessions(TENANT)
    await store.list_sessions(TENANT, agent="helper", status="active", limit=10, offset=10)
    await store.count_sessions(["active"])
    # A turn: the user message, SDK messages with their events, stream frames, usage.
    await store.append_messages(session, [("user", "{}")])
    await store.record_message(session, "assistant", "{}", [("text", "{}")])
    await store.append_events(session, [("lifecycle", "{}")])
    await store.record_usage(TENANT, sid, "helper", "m", [("message", 1)], "{}")
    await store.update_session(sid, last_active_at=now)
    await store.append_stream_events([{"session_id": sid, "seq": 1, "turn_id": "t", "event": "done", "data": "{}"}])
    frame = {"session_id": sid, "seq": 2, "turn_id": "t", "event": "done", "data": "{}"}
    await store.write_turn(session, [TurnMessage("assistant", "{}", [("text", "{}")])], [frame], last_active_at=now)
    await store.last_stream_seq(sid)
    await store.stream_events_after(sid, 0, before=10)
    await store.last_turn_start(sid)
    # History and usage.
    await store.list_messages(TENANT, sid, after=0, limit=100)
    await store.list_events(TENANT, sid, after=0, limit=100)
    await store.list_events(TENANT, sid, kind="usage")
    await store.list_usage(TENANT, UsageFilter(session_id=sid))
    await store.list_usage(TENANT, UsageFilter(after=now - timedelta(days=1)))
    await store.usage_totals(TENANT, UsageFilter(agent_name="helper"))
    await store.get_credential(TENANT, uuid.uuid4())
    await store.list_credentials(TENANT)


def full_scans(plan: list[tuple[Any, ...]], dialect: str) -> list[str]:
    """Table scans and whole-index traversals (an index read without a condition on it)."""
    if dialect == "sqlite":
        details = [str(row[-1]) for row in plan]
        return [d for d in details if d.startswith("SCAN ") and d != "SCAN CONSTANT ROW"]
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node["Node Type"]
        if kind == "Seq Scan" or (kind.endswith("Index Scan") and "Index Cond" not in node):
            found.append(f"{kind} on {node.get('Relation Name') or node.get('Index Name')}")
        for child in node.get("Plans", []):
            walk(child)

    document = plan[0][0]
    walk((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])
    return found


async def test_the_hot_path_uses_indexes(store: Store) -> None:
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, parameters))

    for engine in store.sync_engines():  # on SQLite the hot path's own engine too (store/one_hop.py)
        event.listen(engine, "before_cursor_execute", capture)
    try:
        await hot_path(store)
    finally:
        for engine in store.sync_engines():
            event.remove(engine, "before_cursor_execute", capture)

    dialect = store.engine.dialect.name
    explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN (FORMAT JSON) "
    problems = []
    async with store.engine.connect() as connection:
        if dialect == "postgresql":
            await connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = (await connection.exec_driver_sql(explain + statement, parameters)).all()
            scans = full_scans(list(plan), dialect)
            if scans:
                problems.append(f"{statement}\n  -> {scans}")
    assert len(statements) > 25
    assert not problems, "\n".join(problems)
