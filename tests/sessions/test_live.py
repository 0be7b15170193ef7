"""Live-session entries exist only while they matter: touching 10,000 sessions leaves the map empty; an entry with a
sandbox, a running turn or a waiting caller stays, and callers waiting on one session share one entry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

from ash_server.sandbox.sandbox import Sandbox
from ash_server.sessions.live import LiveSessions
from tests.support.core import core_services, deploy, new_session, turn


class AliveSandbox:
    alive = True


async def test_touching_ten_thousand_sessions_keeps_the_map_bounded() -> None:
    live = LiveSessions()
    for _ in range(10_000):
        async with live.locked(uuid.uuid4(), "t") as entry:
            entry.next_seq = 7
    assert len(live) == 0
    kept = uuid.uuid4()
    async with live.locked(kept, "t") as entry:
        entry.sandbox = cast(Sandbox, AliveSandbox())
    assert len(live) == 1 and live.get(kept) is not None
    live.forget(kept)
    assert len(live) == 0


async def test_callers_waiting_for_one_session_share_its_entry() -> None:
    live = LiveSessions()
    sid = uuid.uuid4()
    seen: list[Any] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with live.locked(sid, "t") as entry:
            seen.append(entry)
            await release.wait()

    async def waiter() -> None:
        async with live.locked(sid, "t") as entry:
            seen.append(entry)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    release.set()  # the holder leaves while the waiter still waits: the entry must not go under it
    await asyncio.gather(first, second)
    assert len(seen) == 2 and seen[0] is seen[1]
    assert len(live) == 0


async def test_a_follower_waits_on_the_entry_the_next_turn_starts_on() -> None:
    live = LiveSessions()
    sid = uuid.uuid4()
    follower = asyncio.create_task(live.wait_for_turn(sid, "t", 5))
    await asyncio.sleep(0)
    assert live.get(sid) is not None  # kept for the follower
    entry = live.entry(sid, "t")
    entry.turn_started.set()
    assert await follower is None  # woken (no turn object in this unit test), not left waiting 5 s
    assert len(live) == 0


async def test_sessions_of_the_service_leave_no_entry_once_they_have_no_sandbox() -> None:
    async with core_services() as services:
        await deploy(services)
        ids = [await new_session(services) for _ in range(3)]
        for sid in ids:
            assert (await turn(services, sid, "hi")).answer == "echo: hi"
        live = services.sessions.live
        assert {sid for sid in live} == set(ids)  # each holds its warm sandbox
        await services.sessions.stop("default", ids[0])
        await services.sessions.end("default", ids[1])
        await services.sessions.pause("default", ids[2])
        assert set(live) == {ids[2]}  # a paused session keeps its sandbox (warm resume)
        for _ in range(50):
            await services.sessions.pause("default", ids[0])  # touching a stopped session makes no entry
        assert set(live) == {ids[2]}
