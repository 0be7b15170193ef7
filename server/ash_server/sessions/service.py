"""Sessions: the one service the API, the queue and the cluster talk to. It is put together from the parts that
do the work, each in its module:

- core.py: the dependencies, the live entries and the shared steps (lock a session, give it a sandbox, persist it);
- lifecycle.py: create, pause, resume, stop, end, fork, configure, workspace access;
- turns.py: messages and their turns, streams, interrupts;
- upkeep.py: the sweeps, moved sessions, recovery after a restart, the drain at shutdown;
- history.py: messages, events and usage read back, for the API and the dashboard.

docs/architecture/session-lifecycle.md draws the state machine (states.py holds it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ..observability.metrics import Metrics
from ..sandbox.sandbox import Sandbox
from ..store.models import SessionRow
from .core import SessionCore
from .history import SessionHistory
from .lifecycle import CreateCounter, Lifecycle
from .live import LiveSessions
from .options import TurnOptions, effective_sdk_options
from .turns import TurnRunner
from .upkeep import Upkeep

__all__ = ["SessionService", "TurnOptions", "effective_sdk_options"]


class SessionService:
    def __init__(
        self,
        core: SessionCore,
        *,
        hot_window_s: float,
        retention_s: float,
        creates: CreateCounter | None = None,
        debug_timing: bool = False,
    ) -> None:
        """`core`: the dependencies and shared steps every part works with (core.py)."""
        self._core = core
        self.turns = TurnRunner(core, debug_timing=debug_timing)
        self.lifecycle = Lifecycle(core, self.turns, creates)
        self.upkeep = Upkeep(core, self.turns, hot_window_s=hot_window_s, retention_s=retention_s)
        self.history = SessionHistory(core.store)
        self.server_id = core.server_id
        # The service's API, by part.
        self.get = core.get
        self.create = self.lifecycle.create
        self.pause = self.lifecycle.pause
        self.resume = self.lifecycle.resume
        self.stop = self.lifecycle.stop
        self.end = self.lifecycle.end
        self.fork = self.lifecycle.fork
        self.update_config = self.lifecycle.update_config
        self.workspace_for_read = self.lifecycle.workspace_for_read
        self.change_workspace = self.lifecycle.change_workspace
        self.prepare_warm = self.lifecycle.prepare_warm
        self.send = self.turns.send
        self.subscribe = self.turns.subscribe
        self.interrupt = self.turns.interrupt
        self.sweep_idle = self.upkeep.sweep_idle
        self.sweep_retention = self.upkeep.sweep_retention
        self.run_idle_sweeper = self.upkeep.run_idle_sweeper
        self.drop_moved = self.upkeep.drop_moved
        self.recover = self.upkeep.recover
        self.shutdown = self.upkeep.shutdown

    @property
    def live(self) -> LiveSessions:
        return self._core.live

    @property
    def metrics(self) -> Metrics:
        return self._core.metrics

    async def list_sessions(
        self, tenant_id: str, *, agent: str | None, status: str | None, limit: int, offset: int
    ) -> Sequence[SessionRow]:
        return await self._core.store.list_sessions(tenant_id, agent=agent, status=status, limit=limit, offset=offset)

    async def count_sessions(self, tenant_id: str, *, agent: str | None, status: str | None) -> int:
        return await self._core.store.count_matching_sessions(tenant_id, agent=agent, status=status)

    def sandbox_of(self, session_id: uuid.UUID) -> Sandbox | None:
        live = self._core.live.get(session_id)
        return live.sandbox if live is not None else None
