"""What a turn costs the database, counted at the engine: the user message and the turn's start in one
transaction, the turn's end (its SDK messages, timeline events, stream frames, SDK session id and last activity) in
one more. A turn of a live session reads nothing: its row is kept in memory and checked by the start transaction,
which reads it back with its reservation; a row changed behind this process's back is read again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from ash_server.errors import Invalid
from ash_server.states import SessionStatus
from ash_server.store.models import utcnow
from ash_server.store.repository import Store
from tests.support.core import core_services, deploy, new_session, turn


@dataclass
class Statements:
    sql: list[str] = field(default_factory=list)
    commits: int = 0

    @property
    def writes(self) -> list[str]:
        return [s for s in self.sql if not s.lstrip().upper().startswith("SELECT")]


@contextmanager
def counted(store: Store) -> Iterator[Statements]:
    """What the store sends, on every engine it has (on SQLite, the hot path's own: store/one_hop.py)."""
    seen = Statements()

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.sql.append(sql)

    def commit(_conn: Any) -> None:
        seen.commits += 1

    engines = store.sync_engines()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", statement)
            event.remove(engine, "commit", commit)


async def test_a_turn_of_a_live_session_takes_two_transactions_of_seven_writes_and_no_read() -> None:
    async with core_services() as services:
        await deploy(services)
        sid = await new_session(services)
        await turn(services, sid, "first")  # the session's sandbox is up and its live state known
        remembered = (await services.sessions.get("default", sid)).sdk_session_id
        with counted(services.store) as seen:
            outcome = await turn(services, sid, "second")
        assert outcome.answer == "echo: second"
        assert seen.commits == 2, seen.sql
        # The start: the reservation, the user message, the first frames. The end: the reservation (which also
        # sets the SDK session id and last activity), the SDK messages, their timeline events, the frames.
        assert len(seen.writes) == 7, "\n".join(seen.writes)
        assert len(seen.sql) == len(seen.writes), "\n".join(seen.sql)  # the session's row came from memory
        # ...and all of it is there: the messages, the timeline and the frames, the memory for a cold resume.
        stored = await services.sessions.get("default", sid)
        assert stored.sdk_session_id == remembered
        messages = await services.store.list_messages("default", sid, limit=100)
        assert [m.sequence for m in messages] == list(range(1, len(messages) + 1))
        roles = [m.role for m in messages]
        half = len(roles) // 2
        assert roles[:half] == roles[half:] and roles[0] == "user", roles  # the second turn stored as the first
        events = await services.store.list_events("default", sid, limit=100)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)) and events
        frames = [f.event for f in await services.store.stream_events_after(sid, 0)]
        assert frames.count("session_start") == frames.count("done") == 2 and frames[-1] == "done", frames


async def test_a_row_changed_behind_the_servers_back_is_read_again_and_the_message_stored_once() -> None:
    """Another server (or anything writing the store directly) changes the session's config: the message's start
    transaction finds the kept row stale, rolls back, and the message runs on the row read again."""
    async with core_services() as services:
        await deploy(services)
        sid = await new_session(services)
        await turn(services, sid, "first")
        changed = {"model": "claude-other", "extraEnv": {"A": "1"}}
        await services.store.update_session(sid, config=changed)
        with counted(services.store) as seen:
            outcome = await turn(services, sid, "second")
        assert outcome.answer == "echo: second"
        # The checked start rolled back (no commit), then the session was read and the turn ran.
        assert seen.commits == 2 and any(s.lstrip().upper().startswith("SELECT") for s in seen.sql), seen.sql
        live = services.sessions.live.get(sid)
        assert live is not None and live.row is not None and live.row.config == changed
        messages = await services.store.list_messages("default", sid, limit=100)
        assert [m.sequence for m in messages] == list(range(1, len(messages) + 1))
        assert [m.role for m in messages].count("user") == 2  # the rolled-back start left nothing behind


async def test_a_session_ended_behind_the_servers_back_refuses_the_message() -> None:
    async with core_services() as services:
        await deploy(services)
        sid = await new_session(services)
        await turn(services, sid, "first")
        await services.store.update_session(sid, status=SessionStatus.ENDED, ended_at=utcnow())
        before = [m.sequence for m in await services.store.list_messages("default", sid, limit=100)]
        try:
            await turn(services, sid, "second")
        except Invalid as exc:
            assert "ended" in exc.message
        else:
            raise AssertionError("a message to an ended session ran")
        assert [m.sequence for m in await services.store.list_messages("default", sid, limit=100)] == before
