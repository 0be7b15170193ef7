"""Model usage written with the turn it belongs to. The gateway learns a call's usage when the model's answer
ends, while the turn that made the call still runs: its rows and timeline event join the turn's next write (at the
latest its end) instead of a transaction of their own. A call with no running turn here (a background turn, a
turn that just ended) is written at once, as before."""

from __future__ import annotations

import uuid

from ..gateway.model import ModelRoute
from ..gateway.usage import CallUsage
from ..store.models import utcnow
from ..store.repository import Store
from ..store.timeline import TurnMessage, usage_rows
from .turn import Turn


class TurnUsage:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._turns: dict[str, Turn] = {}

    def follow(self, turn: Turn) -> None:
        """From now on, this session's model usage goes with `turn`."""
        self._turns[turn.session_id] = turn

    def forget(self, turn: Turn) -> None:
        """Before the turn's last write takes what it holds: usage that arrives later is written by itself."""
        if self._turns.get(turn.session_id) is turn:
            del self._turns[turn.session_id]

    async def record(self, route: ModelRoute, usage: CallUsage, timeline_json: str) -> None:
        model = usage.model or "unknown"
        turn = self._turns.get(route.session_id)
        if turn is not None and not turn.finished:
            rows = usage_rows(
                route.tenant_id, uuid.UUID(route.session_id), route.agent_name, model, usage.metrics(), utcnow()
            )
            turn.unwritten.append(TurnMessage.model_usage(rows, timeline_json))
            return
        await self._store.record_usage(
            route.tenant_id, uuid.UUID(route.session_id), route.agent_name, usage.model, usage.metrics(), timeline_json
        )
