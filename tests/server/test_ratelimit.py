"""Token buckets: a burst up to the limit, then the limit's pace; 429 with Retry-After; bounded memory."""

from __future__ import annotations

import pytest

from ash_server.errors import RateLimited
from ash_server.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_limit_then_the_limits_pace() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    assert [limiter.hit("key") for _ in range(6)] == [None] * 6
    assert limiter.hit("key") == pytest.approx(10)
    clock.now += 4
    assert limiter.retry_after("key") == pytest.approx(6)
    clock.now += 6
    assert limiter.hit("key") is None
    assert limiter.hit("key") == pytest.approx(10)
    assert limiter.hit("other") is None  # buckets are per key


def test_refill_stops_at_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)
    limiter.hit("key")
    clock.now += 3600
    assert [limiter.hit("key") for _ in range(3)][:2] == [None, None]
    assert limiter.hit("key") is not None


def test_check_raises_429_with_a_whole_number_of_seconds() -> None:
    limiter = RateLimiter(1, clock=Clock())
    limiter.check("key", "sessions")
    with pytest.raises(RateLimited) as refused:
        limiter.check("key", "sessions")
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "60"}
    assert "at most 1 sessions per minute" in refused.value.message


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(0)
    assert not limiter.enabled
    assert all(limiter.hit("key") is None for _ in range(1000))
    assert limiter.retry_after("key") is None


def test_memory_is_bounded_by_evicting_the_least_recently_used() -> None:
    limiter = RateLimiter(1, max_keys=3, clock=Clock())
    for key in ("a", "b", "c"):
        limiter.hit(key)
    limiter.hit("a")  # a is used again: b is now the oldest
    limiter.hit("d")
    assert limiter.hit("b") is None  # evicted, so it starts full again
    assert limiter.hit("a") is not None
