"""/health: liveness and a summary of load, the one route that needs no API key."""

from __future__ import annotations

import socket
import time

from fastapi import APIRouter

from .. import __version__
from .deps import ServicesDep
from .schemas import HealthResponse, PoolStats

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(services: ServicesDep) -> HealthResponse:
    pool = await services.pool.stats()
    return HealthResponse(
        status="ok",
        version=__version__,
        coordinator_id=socket.gethostname(),
        active_sessions=await services.store.count_sessions(["active"]),
        active_sandboxes=pool["total"],
        remote_runners=0,
        uptime=round(time.monotonic() - services.started_at, 3),
        isolation=services.sandboxes.isolation,
        network=services.sandboxes.default_network,
        limits=services.sandboxes.limits_mechanism,
        open_streams=services.streams.open,
        server_id=services.pool.server_id,
        snapshots=services.snapshots.url,
        pool=PoolStats.model_validate(pool),
    )
