"""/api/analytics: a tenant's totals (agents, sessions by status, usage, eval runs by status), each one SQL
aggregate (the reference's routes/analytics.ts)."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Query

from ...store.evals import EvalStore
from ...store.usage import UsageFilter
from ..deps import PrincipalDep, ServicesDep
from ..schemas import UsageStats
from ..schemas.evals import AnalyticsResponse, CountTotal, EvalCounts, SessionCounts
from .usage import IsoTime, utc

router = APIRouter(prefix="/api/analytics", tags=["usage"])

AFTER = Query(None, description="Only usage recorded after this ISO 8601 time.")
BEFORE = Query(None, description="Only usage recorded before this ISO 8601 time.")


@router.get("", response_model=AnalyticsResponse)
async def analytics(
    principal: PrincipalDep,
    services: ServicesDep,
    after: IsoTime | None = AFTER,
    before: IsoTime | None = BEFORE,
) -> AnalyticsResponse:
    """As in the reference, `after` and `before` narrow the usage totals only."""
    tenant = principal.tenant_id
    evals = EvalStore(services.store)
    sessions: Counter[str] = Counter()
    for _, status, count in await services.sessions.history.counts(tenant):
        sessions[status] += count
    usage = await services.store.usage_totals(tenant, UsageFilter(after=utc(after), before=utc(before)))
    runs = await evals.run_status_counts(tenant)
    return AnalyticsResponse(
        agents=CountTotal(total=await evals.count_agents(tenant)),
        sessions=SessionCounts(total=sum(sessions.values()), by_status=dict(sessions)),
        usage=UsageStats.of(usage),
        evals=EvalCounts(total_runs=sum(runs.values()), by_status=runs),
    )
