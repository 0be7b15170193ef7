"""A runner's load as it reports it in heartbeats: its pool's sandboxes, plus the creates it has received but not
yet given a pool slot (the session service tells it of each, sessions/lifecycle.py `CreateCounter`)."""

from __future__ import annotations

from ..sandbox.pool import SandboxPool


class CreateLoad:
    def __init__(self) -> None:
        # Creates received since the runner last registered, and those not yet holding a pool slot.
        self.received = 0
        self.pending = 0

    def arrived(self) -> None:
        self.received += 1
        self.pending += 1

    def settled(self) -> None:
        self.pending -= 1

    def load(self, pool: SandboxPool) -> tuple[int, int]:
        """(sandboxes held or about to be, creates received): read in one go, so a create is counted in exactly
        one of the two (cluster/registry.py)."""
        return pool.occupied + self.pending, self.received

    def reset(self) -> None:
        """The runner registers (again): coordinators count placements from zero."""
        self.received = 0
