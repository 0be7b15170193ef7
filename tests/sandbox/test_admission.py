"""Admission of sandbox starts (sandbox/admission.py): a bounded number at once, the rest in a fair queue, a
session's start before a warm pool's, a refused start (503, Retry-After) before anything of it exists."""

from __future__ import annotations

import asyncio

import pytest

from ash_server.errors import StartsBusy
from ash_server.sandbox.admission import StartAdmission, StartPriority


async def test_no_more_than_the_limit_start_at_once_and_they_go_in_order() -> None:
    gate = StartAdmission(2, queue_timeout_s=30)
    running, most, order = 0, 0, []

    async def start(n: int) -> None:
        nonlocal running, most
        admission = await gate.admit()
        order.append(n)
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        admission.release()

    tasks = []
    for n in range(8):
        tasks.append(asyncio.create_task(start(n)))
        await asyncio.sleep(0)  # each arrives after the one before
    await asyncio.gather(*tasks)
    assert most == 2
    assert order == list(range(8))
    assert gate.stats() == {"startsInFlight": 0, "startsWaiting": 0, "startsLimit": 2}


async def test_a_session_start_goes_before_a_warm_pool_start_that_came_first() -> None:
    gate = StartAdmission(1, queue_timeout_s=30)
    first = await gate.admit()
    order: list[str] = []

    async def start(name: str, priority: StartPriority) -> None:
        admission = await gate.admit(priority)
        order.append(name)
        admission.release()

    warm = asyncio.create_task(start("warm", StartPriority.WARM))
    await asyncio.sleep(0)
    session = asyncio.create_task(start("session", StartPriority.SESSION))
    await asyncio.sleep(0)
    assert gate.waiting == 2
    first.release()
    await asyncio.gather(warm, session)
    assert order == ["session", "warm"]


async def test_a_session_start_that_waits_too_long_is_refused_with_a_retry_after() -> None:
    gate = StartAdmission(1, queue_timeout_s=0.05)
    held = await gate.admit()
    with pytest.raises(StartsBusy) as refused:
        await gate.admit()
    assert refused.value.status_code == 503
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert gate.waiting == 0 and gate.refused == 1
    # A warm pool's start is not refused: it waits as long as it takes.
    warm = asyncio.create_task(gate.admit(StartPriority.WARM))
    await asyncio.sleep(0.1)
    assert not warm.done()
    held.release()
    (await warm).release()
    assert gate.in_flight == 0


async def test_a_waiter_that_goes_away_takes_no_place() -> None:
    gate = StartAdmission(1, queue_timeout_s=30)
    held = await gate.admit()
    gone = asyncio.create_task(gate.admit())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    held.release()
    assert gate.in_flight == 0 and gate.waiting == 0
    (await gate.admit()).release()  # the place is free
