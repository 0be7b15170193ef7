"""/health: liveness and a summary of load, the one route that needs no API key."""

from __future__ import annotations

import socket
import time

from fastapi import APIRouter

from .. import __version__
from .deps import Services, ServicesDep
from .internal import runner_public
from .schemas import HealthResponse, PoolStats

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(services: ServicesDep) -> HealthResponse:
    if services.registry is not None:
        return await _coordinator_health(services)
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
        mode=services.settings.mode,
    )


async def _coordinator_health(services: Services) -> HealthResponse:
    """The deployment as this coordinator sees it: every runner, and the pools of the live ones summed up."""
    assert services.registry is not None
    runners = await services.registry.runners()
    live = [r for r in runners if r.status != "dead"]
    fields = [field.alias or name for name, field in PoolStats.model_fields.items()]
    pool = {name: sum(int(r.stats.get(name, 0)) for r in live) for name in fields}
    return HealthResponse(
        status="ok",
        version=__version__,
        coordinator_id=socket.gethostname(),
        active_sessions=await services.store.count_sessions(["active"]),
        active_sandboxes=pool["total"],
        remote_runners=len(live),
        uptime=round(time.monotonic() - services.started_at, 3),
        isolation="runners",
        network="runners",
        limits="runners",
        open_streams=services.streams.open,
        server_id=services.pool.server_id,
        snapshots=services.snapshots.url,
        pool=PoolStats.model_validate(pool),
        mode="coordinator",
        runners=[runner_public(r) for r in runners],
    )
