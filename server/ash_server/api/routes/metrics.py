"""/metrics: Prometheus text format. Authenticated like the API, or with the scraper token ASH_METRICS_TOKEN."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from ...observability.metrics import Metrics
from ..deps import get_principal, get_services

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    services = get_services(request)
    token = services.settings.metrics_token
    presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        await get_principal(request)  # an API key works too; raises 401 otherwise
    collected: Metrics = request.app.state.metrics
    collected.open_streams.set(services.streams.open)
    return Response(collected.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
