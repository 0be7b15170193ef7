"""A model call's usage joins the write of the turn that made it (sessions/turn_usage.py): no transaction of its
own while the turn runs, one of its own once the turn has taken its last rows."""

from __future__ import annotations

import json

from ash_server.gateway.model import ModelRoute
from ash_server.gateway.usage import CallUsage
from ash_server.sessions.turn import Turn
from ash_server.sessions.turn_usage import TurnUsage
from tests.sessions.test_turn_writes import counted
from tests.support.core import core_services, deploy, new_session


async def test_usage_goes_with_the_running_turn_and_alone_after_it() -> None:
    async with core_services() as services:
        await deploy(services)
        sid = await new_session(services)
        session = await services.sessions.get("default", sid)
        book = TurnUsage(services.store)
        route = ModelRoute("sbx-test", str(sid), "default", "core-agent", None)
        call = CallUsage(model="claude-test", input_tokens=12, output_tokens=3, seen=True)
        timeline = json.dumps({"action": "model_usage", "model": "claude-test"})

        turn = Turn(session_id=str(sid), first_seq=1)
        book.follow(turn)
        with counted(services.store) as seen:
            await book.record(route, call, timeline)
        assert seen.sql == [] and seen.commits == 0  # held by the turn
        [held] = turn.take_unwritten()
        assert [row["event_type"] for row in held.usage] == ["message", "input_tokens", "output_tokens"]
        with counted(services.store) as seen:
            await services.store.write_turn(session, [held], [])
        assert seen.commits == 1
        stored = await services.store.list_usage("default")
        assert sorted((u.event_type, u.value) for u in stored) == [
            ("input_tokens", 12),
            ("message", 1),
            ("output_tokens", 3),
        ]
        events = await services.store.list_events("default", sid, limit=100)
        assert [e.data for e in events if e.type == "lifecycle" and "model_usage" in (e.data or "")] == [timeline]

        book.forget(turn)
        with counted(services.store) as seen:
            await book.record(route, call, timeline)
        assert seen.commits == 1 and turn.take_unwritten() == []  # the turn's rows are taken: written alone
        assert len(await services.store.list_usage("default")) == 6
