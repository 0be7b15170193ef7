"""/health: liveness and a summary of load, the one route that needs no API key."""

from __future__ import annotations

import socket
import time
from typing import Any

from fastapi import APIRouter

from ... import __version__
from ...states import SessionStatus
from ..deps import PrincipalDep, Services, ServicesDep
from ..schemas import HealthResponse, ModelCheckResponse, PoolStats
from ..schemas.system import RuntimeHealth
from .internal import runner_public

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(services: ServicesDep) -> HealthResponse:
    if services.registry is not None:
        return await _coordinator_health(services)
    pool = await services.pool.stats()
    sandboxes = services.sandboxes
    return await _health(
        services,
        pool,
        remote_runners=0,
        isolation=sandboxes.isolation,
        network=sandboxes.default_network,
        limits=sandboxes.limits_mechanism,
        bridge_start=sandboxes.bridge_start,
        runtimes={
            name: RuntimeHealth(available=status.available, reason=status.reason)
            for name, status in sandboxes.runtimes.status().items()
        },
    )


async def _coordinator_health(services: Services) -> HealthResponse:
    """The deployment as this coordinator sees it: every runner, and the pools of the live ones summed up."""
    assert services.registry is not None
    runners = await services.registry.runners()
    live = [r for r in runners if r.status != "dead"]
    fields = [field.alias or name for name, field in PoolStats.model_fields.items()]
    pool = {name: sum(int(r.stats.get(name, 0)) for r in live) for name in fields}
    return await _health(
        services,
        pool,
        remote_runners=len(live),
        isolation="runners",
        network="runners",
        limits="runners",
        bridge_start="runners",
        runners=[runner_public(r) for r in runners],
    )


async def _health(services: Services, pool: dict[str, int], **specific: Any) -> HealthResponse:
    return HealthResponse(
        status="ok",
        version=__version__,
        coordinator_id=socket.gethostname(),
        active_sessions=await services.store.count_sessions([SessionStatus.ACTIVE]),
        active_sandboxes=pool["total"],
        uptime=int(time.monotonic() - services.started_at),
        open_streams=services.streams.open,
        server_id=services.pool.server_id,
        snapshots=services.snapshots.url,
        pool=PoolStats.model_validate(pool),
        mode=services.settings.mode,
        model_key=services.gateway.key_configured,
        **specific,
    )


@router.get("/api/model/check", response_model=ModelCheckResponse)
async def check_model(principal: PrincipalDep, services: ServicesDep) -> ModelCheckResponse:
    """Whether the server's model key works: one free `count_tokens` call upstream (`ash health --model`)."""
    check = await services.gateway.check_model()
    return ModelCheckResponse(key_configured=check.key_configured, ok=check.ok, status=check.status, error=check.error)
