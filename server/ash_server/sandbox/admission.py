"""Admission of sandbox starts: at most `limit` starts run at once, the rest wait their turn.

A start is CPU-bound for seconds (the bridge imports the SDK, the CLI boots). Started all at once on a small machine
they share the cores until none is ready within its deadline, and a burst of creates fails for everyone. Here they
queue instead: first come, first served, a session's start before a warm pool's, and the wait does not count
against the bridge's readiness deadline (it starts once admitted). A session start that waits longer than
`queue_timeout_s` is refused with 503 and a Retry-After before anything of it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from enum import IntEnum

from ..errors import StartsBusy
from ..observability.metrics import Metrics

# How much a new start time moves the running estimate (the Retry-After a refused start gets).
ESTIMATE_WEIGHT = 0.2


class StartPriority(IntEnum):
    SESSION = 0  # someone waits for it
    WARM = 1  # the warm pool's: only when no session start waits


class StartAdmission:
    def __init__(self, limit: int, *, queue_timeout_s: float, metrics: Metrics | None = None) -> None:
        if limit < 1:
            raise ValueError("at least one start must be allowed at a time")
        self.limit = limit
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0
        self.refused = 0
        self._metrics = metrics or Metrics()
        self._waiting: dict[StartPriority, deque[asyncio.Future[None]]] = {p: deque() for p in StartPriority}
        self._start_s = 2.0  # a cold start on a busy two-core machine, until measured here

    @property
    def waiting(self) -> int:
        return sum(1 for queue in self._waiting.values() for f in queue if not f.done())

    def stats(self) -> dict[str, int]:
        return {"startsInFlight": self.in_flight, "startsWaiting": self.waiting, "startsLimit": self.limit}

    async def admit(self, priority: StartPriority = StartPriority.SESSION) -> Admission:
        """Wait for one of the `limit` places (StartsBusy after `queue_timeout_s` for a session's start); the
        caller starts its sandbox, then releases the place."""
        waited = time.perf_counter()
        await self._enter(priority)
        self._metrics.sandbox_start_wait_seconds.observe(time.perf_counter() - waited)
        return Admission(self)

    def _done(self, took_s: float) -> None:
        self._start_s += ESTIMATE_WEIGHT * (took_s - self._start_s)
        self._leave()

    async def _enter(self, priority: StartPriority) -> None:
        if self.in_flight < self.limit and not self.waiting:
            self._take()
            return
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(place)
        self._gauge()
        # The warm pool's starts wait as long as it takes: nobody is waiting for them.
        timeout = self.queue_timeout_s if priority == StartPriority.SESSION else None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(place)
        except TimeoutError:
            if place.done():  # admitted just as the time ran out: keep the place
                return
            self._forget(priority, place)
            self.refused += 1
            self._metrics.sandbox_start_refusals.inc()
            raise StartsBusy(
                f"{self.waiting + self.in_flight} sandbox starts are ahead of this one ({self.limit} at a time) and "
                f"it waited {self.queue_timeout_s:.0f}s; try again shortly",
                retry_after_s=self._retry_after_s(),
            ) from None
        except asyncio.CancelledError:
            if place.done():
                self._leave()  # admitted, but the caller is gone: pass the place on
            else:
                self._forget(priority, place)
            raise

    def _take(self) -> None:
        self.in_flight += 1
        self._gauge()

    def _leave(self) -> None:
        self.in_flight -= 1
        for priority in StartPriority:
            queue = self._waiting[priority]
            while queue:
                place = queue.popleft()
                if not place.done():
                    place.set_result(None)
                    self._take()
                    return
        self._gauge()

    def _forget(self, priority: StartPriority, place: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting[priority].remove(place)
        place.cancel()
        self._gauge()

    def _retry_after_s(self) -> int:
        """About when the queue ahead will have drained, from the recent start times."""
        ahead = self.waiting + self.in_flight
        return max(1, math.ceil(ahead / self.limit * self._start_s))

    def _gauge(self) -> None:
        self._metrics.sandbox_starts_in_flight.set(self.in_flight)
        self._metrics.sandbox_start_queue.set(self.waiting)


class Admission:
    """One admitted start's place; `release` (once the sandbox is up or failed) passes it on."""

    def __init__(self, gate: StartAdmission) -> None:
        self._gate = gate
        self._since = time.perf_counter()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._gate._done(time.perf_counter() - self._since)
