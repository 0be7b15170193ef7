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
    live = list(services.sandboxes.live.values())
    running = sum(1 for s in live if s.alive)
    return HealthResponse(
        status="ok",
        version=__version__,
        coordinator_id=socket.gethostname(),
        active_sessions=await services.store.count_sessions(["active"]),
        active_sandboxes=running,
        remote_runners=0,
        uptime=round(time.monotonic() - services.started_at, 3),
        isolation=services.sandboxes.isolation,
        network=services.sandboxes.default_network,
        limits=services.sandboxes.limits_mechanism,
        open_streams=services.streams.open,
        pool=PoolStats(
            total=len(live),
            cold=0,
            warming=0,
            warm=0,
            waiting=0,
            running=running,
            max_capacity=services.settings.max_sandboxes,
            resume_warm_hits=services.sessions.resume_warm_hits,
            resume_cold_hits=services.sessions.resume_cold_hits,
            pre_warm_hits=0,
        ),
    )
