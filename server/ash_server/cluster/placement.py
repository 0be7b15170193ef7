"""Where a new session goes: the least-loaded live runner with room. The store hands over the live runners inside
the transaction that counts the placement (store/runners.py); the choice is made here."""

from __future__ import annotations

from collections.abc import Sequence

from ..store.models import Runner


def runner_load(runner: Runner) -> int:
    """Sandboxes a runner holds, counting the sessions placed on it since its last heartbeat."""
    return runner.sandboxes + max(0, runner.placed - runner.received)


def least_loaded(candidates: Sequence[Runner]) -> Runner | None:
    """The runner with the lowest load over its capacity (then the lowest load, then the id), among those with
    room; None when none has."""
    with_room = [r for r in candidates if runner_load(r) < r.max_sandboxes]
    if not with_room:
        return None
    return min(with_room, key=lambda r: (runner_load(r) / r.max_sandboxes, runner_load(r), r.id))
