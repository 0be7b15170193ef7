"""/metrics: Prometheus text format, server-wide (every tenant's sessions and usage): for the scraper token
ASH_METRICS_TOKEN or a key of the operator's tenant (`default`), 403 for any other tenant's key."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from ...errors import Forbidden
from ...observability.metrics import Metrics
from ...store.models import DEFAULT_TENANT
from ..deps import get_principal, get_services

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    services = get_services(request)
    token = services.settings.metrics_token
    presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        principal = await get_principal(request)  # an API key works too; raises 401 otherwise
        if principal.tenant_id != DEFAULT_TENANT:
            raise Forbidden(
                "/metrics covers the whole server: it is for the operator's tenant or the scraper token "
                "(ASH_METRICS_TOKEN)"
            )
    collected: Metrics = request.app.state.metrics
    collected.open_streams.set(services.streams.open)
    return Response(collected.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
