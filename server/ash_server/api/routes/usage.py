"""/api/usage: token usage the model gateway recorded, as events and as totals."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator

from ...store.usage import UsageFilter
from ..deps import PrincipalDep, ServicesDep
from ..schemas import UsageEventPublic, UsageEventsResponse, UsageStats, UsageStatsResponse

router = APIRouter(prefix="/api/usage", tags=["usage"])


def _iso_only(value: object) -> object:
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*", value):
        raise ValueError("expected an ISO 8601 time, not a number")  # pydantic would read one as a Unix time
    return value


# A time in a query: ISO 8601 (`2026-01-31T12:00:00Z`), as the OpenAPI's date-time says.
IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]


def utc(when: datetime | None) -> datetime | None:
    """Times without an offset are UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


async def usage_filter(  # async: a plain def dependency costs a thread hop
    session_id: Annotated[uuid.UUID | None, Query(alias="sessionId")] = None,
    agent: Annotated[str | None, Query(max_length=255, description="Agent name (also `agentName`).")] = None,
    agent_name: Annotated[str | None, Query(alias="agentName", max_length=255, include_in_schema=False)] = None,
    after: Annotated[IsoTime | None, Query(description="Only events created after this ISO 8601 time.")] = None,
    before: Annotated[IsoTime | None, Query(description="Only events created before this ISO 8601 time.")] = None,
) -> UsageFilter:
    return UsageFilter(session_id=session_id, agent_name=agent or agent_name, after=utc(after), before=utc(before))


FilterDep = Annotated[UsageFilter, Depends(usage_filter)]


@router.get("", response_model=UsageEventsResponse)
async def list_usage(
    principal: PrincipalDep, services: ServicesDep, where: FilterDep, limit: int = Query(100, ge=1, le=1000)
) -> UsageEventsResponse:
    events = await services.store.list_usage(principal.tenant_id, where, limit=limit)
    return UsageEventsResponse(events=[UsageEventPublic.of(e) for e in events])


@router.get("/stats", response_model=UsageStatsResponse)
async def usage_stats(principal: PrincipalDep, services: ServicesDep, where: FilterDep) -> UsageStatsResponse:
    totals = await services.store.usage_totals(principal.tenant_id, where)
    return UsageStatsResponse(stats=UsageStats.of(totals))
