"""What a session has said and done, read back: its messages, timeline events and usage, and a tenant's session
counts. The API and the dashboard read through this one part (the session itself through `SessionService.get`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ..store.models import Message, SessionEvent
from ..store.repository import Store
from ..store.usage import UsageFilter


class SessionHistory:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def messages(self, tenant_id: str, session_id: uuid.UUID, *, after: int, limit: int) -> Sequence[Message]:
        return await self._store.list_messages(tenant_id, session_id, after=after, limit=limit)

    async def events(
        self, tenant_id: str, session_id: uuid.UUID, *, after: int, limit: int, kind: str | None = None
    ) -> Sequence[SessionEvent]:
        return await self._store.list_events(tenant_id, session_id, after=after, limit=limit, kind=kind)

    async def usage(self, tenant_id: str, session_id: uuid.UUID | None = None) -> list[tuple[str, str, float]]:
        """(model, event type, total) of the tenant's usage, or one session's."""
        return await self._store.usage_totals(tenant_id, UsageFilter(session_id=session_id))

    async def counts(self, tenant_id: str) -> list[tuple[str, str, int]]:
        """(agent, status, sessions) over the tenant's sessions."""
        return await self._store.session_counts(tenant_id)

    async def last_frame(self, session_id: uuid.UUID) -> int:
        """The sequence of the session's last stored stream frame (0: none yet)."""
        return await self._store.last_stream_seq(session_id)
