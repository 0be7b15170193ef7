"""A burst of creates in-process (fake bridge, real pool and manager): starts wait their turn instead of all
starting at once, and a create refused for a long queue leaves no session and no sandbox behind."""

from __future__ import annotations

import asyncio
import shlex
import sys

from ash_server.errors import StartsBusy
from ash_server.states import SessionStatus
from tests.support.core import FAKE_BRIDGE, core_services, deploy, new_session


async def test_a_burst_of_creates_waits_its_turn_and_every_one_succeeds() -> None:
    async with core_services(max_concurrent_starts=1, warm_pool_size=0) as services:
        await deploy(services)
        admission = services.pool.admission
        most_in_flight = most_waiting = 0
        creates = [asyncio.create_task(new_session(services)) for _ in range(6)]
        while not all(c.done() for c in creates):
            most_in_flight = max(most_in_flight, admission.in_flight)
            most_waiting = max(most_waiting, admission.waiting)
            await asyncio.sleep(0.005)
        ids = await asyncio.gather(*creates)
        assert most_in_flight == 1
        assert most_waiting >= 1  # they queued, rather than all starting at once
        for sid in ids:
            assert (await services.sessions.get("default", sid)).status == SessionStatus.ACTIVE
        assert (await services.pool.stats())["startsWaiting"] == 0


async def test_a_create_refused_for_a_long_queue_leaves_nothing_behind() -> None:
    slow_bridge = f"sh -c {shlex.quote(f'sleep 2; exec {sys.executable} {FAKE_BRIDGE}')}"
    settings = {"max_concurrent_starts": 1, "start_queue_timeout_ms": 1000, "bridge_entry": slow_bridge}
    async with core_services(warm_pool_size=0, **settings) as services:
        await deploy(services)
        outcomes = await asyncio.gather(*(new_session(services) for _ in range(3)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, StartsBusy)]
        created = [o for o in outcomes if not isinstance(o, BaseException)]
        assert refused and created, outcomes
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        listed = await services.sessions.list_sessions("default", agent=None, status=None, limit=10, offset=0)
        assert sorted(s.id for s in listed) == sorted(created)  # a refused create made no session
        stats = await services.pool.stats()
        assert stats["total"] == len(created) and stats["startsInFlight"] == 0 and stats["startsWaiting"] == 0
