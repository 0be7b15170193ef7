"""/api/usage: token usage the model gateway recorded, as events and as totals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Query

from ..deps import PrincipalDep, ServicesDep
from ..schemas import UsageEventPublic, UsageEventsResponse, UsageStats, UsageStatsResponse

router = APIRouter(prefix="/api/usage", tags=["usage"])

SESSION_ID = Query(None, alias="sessionId")
AGENT = Query(None, max_length=255, description="Agent name (also `agentName`).")
AGENT_NAME = Query(None, alias="agentName", max_length=255, include_in_schema=False)
AFTER = Query(None, description="Only events created after this ISO 8601 time.")
BEFORE = Query(None, description="Only events created before this ISO 8601 time.")


def _utc(when: datetime | None) -> datetime | None:
    """Times without an offset are UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


@router.get("", response_model=UsageEventsResponse)
async def list_usage(
    principal: PrincipalDep,
    services: ServicesDep,
    session_id: uuid.UUID | None = SESSION_ID,
    agent: str | None = AGENT,
    agent_name: str | None = AGENT_NAME,
    after: datetime | None = AFTER,
    before: datetime | None = BEFORE,
    limit: int = Query(100, ge=1, le=1000),
) -> UsageEventsResponse:
    events = await services.store.list_usage(
        principal.tenant_id,
        session_id=session_id,
        agent_name=agent or agent_name,
        after=_utc(after),
        before=_utc(before),
        limit=limit,
    )
    return UsageEventsResponse(events=[UsageEventPublic.of(e) for e in events])


@router.get("/stats", response_model=UsageStatsResponse)
async def usage_stats(
    principal: PrincipalDep,
    services: ServicesDep,
    session_id: uuid.UUID | None = SESSION_ID,
    agent: str | None = AGENT,
    agent_name: str | None = AGENT_NAME,
    after: datetime | None = AFTER,
    before: datetime | None = BEFORE,
) -> UsageStatsResponse:
    totals = await services.store.usage_totals(
        principal.tenant_id,
        session_id=session_id,
        agent_name=agent or agent_name,
        after=_utc(after),
        before=_utc(before),
    )
    return UsageStatsResponse(stats=UsageStats.of(totals))
