"""Waiting for something a server does in the background, with a deadline (never a timing assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], what: str, limit_s: float = 60) -> Any:
    """The first truthy value of `condition()`, polled every 0.1 s; AssertionError naming `what` after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
