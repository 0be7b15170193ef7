"""Abuse limits: a token bucket per key (API key id, or client IP for failed authentications).

A bucket holds up to `per_minute` tokens and refills at `per_minute` tokens a minute, so a client may burst up to
its limit and then go at the limit's pace. Buckets live in the server's memory: with several servers behind a
load balancer each enforces its own (see docs/security.md). Memory is bounded by evicting the least recently used
bucket, which at worst gives back a depleted bucket's tokens to a client that rotates through more keys than
`max_keys`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RateLimited

MAX_KEYS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, per_minute: int, *, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        return bucket

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may act again, or None if it may now (nothing is consumed)."""
        if not self.enabled or key not in self._buckets:  # no bucket yet: a full one (and none is made)
            return None
        bucket = self._bucket(key)
        return None if bucket.tokens >= 1 else (1 - bucket.tokens) / self._rate

    def hit(self, key: str) -> float | None:
        """Consume a token: None if there was one, else the seconds until there will be (nothing consumed)."""
        if not self.enabled:
            return None
        bucket = self._bucket(key)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self._rate

    def check(self, key: str, what: str) -> None:
        """Consume a token or raise RateLimited (429 with Retry-After)."""
        wait = self.hit(key)
        if wait is not None:
            raise too_many(what, self.per_minute, wait)


def too_many(what: str, per_minute: int, wait_s: float) -> RateLimited:
    seconds = max(1, math.ceil(wait_s))
    return RateLimited(
        f"rate limit exceeded: at most {per_minute} {what} per minute; retry in {seconds} s",
        retry_after_s=seconds,
    )


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The server's limits: per API key on session creation and messages, per client IP on failed sign-ins."""

    sessions: RateLimiter
    messages: RateLimiter

    @classmethod
    def unlimited(cls) -> RateLimits:
        return cls(RateLimiter(0), RateLimiter(0))
