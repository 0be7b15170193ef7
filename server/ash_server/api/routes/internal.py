"""/api/internal: runners registering and heartbeating (signed, cluster/), and the runner list for operators.

`/api/internal/cluster/*` is for runners only: api/middleware/signed.py refuses anything not signed with
ASH_INTERNAL_SECRET before it gets here. `GET /api/internal/runners` is for operators: an API key of the default tenant.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request

from ...cluster.registry import Registry, RunnerView
from ...errors import NotFound, Unauthorized
from ...store.models import DEFAULT_TENANT
from ..deps import PrincipalDep, Services, ServicesDep
from ..schemas import OkResponse, RunnerHeartbeat, RunnerPublic, RunnerRef, RunnerRegistration, RunnersResponse

router = APIRouter(prefix="/api/internal", tags=["runners"])


def registry_of(services: Services) -> Registry:
    if services.registry is None:
        raise NotFound("this server is not a coordinator (ASH_MODE=coordinator)")
    return services.registry


async def _machine(request: Request) -> None:  # async: a plain def dependency costs a thread hop
    """A dependency, so that it runs before the body is validated: an unsigned caller learns nothing of the
    body's schema."""
    signed = getattr(request.state, "signed", None)
    if signed is None or signed.tenant_id:
        raise Unauthorized("runner endpoints take requests signed by a runner")


MACHINE = Depends(_machine)


def runner_public(view: RunnerView) -> RunnerPublic:
    url = urlsplit(view.url)
    return RunnerPublic.of(
        view,
        pool=view.stats,
        runner_id=view.id,
        host=url.hostname or "",
        port=url.port or (443 if url.scheme == "https" else 80),
        active=view.load,
        max=view.max_sandboxes,
        last_heartbeat=view.last_heartbeat_at,
    )


@router.post("/cluster/register", response_model=OkResponse, include_in_schema=False, dependencies=[MACHINE])
async def register(body: RunnerRegistration, services: ServicesDep) -> OkResponse:
    await registry_of(services).register(body.id, body.url, body.max_sandboxes, body.version)
    return OkResponse(ok=True)


@router.post("/cluster/heartbeat", response_model=OkResponse, include_in_schema=False, dependencies=[MACHINE])
async def heartbeat(body: RunnerHeartbeat, services: ServicesDep) -> OkResponse:
    await registry_of(services).heartbeat(body.id, sandboxes=body.sandboxes, received=body.received, stats=body.stats)
    return OkResponse(ok=True)


@router.post("/cluster/drain", response_model=OkResponse, include_in_schema=False, dependencies=[MACHINE])
async def drain(body: RunnerRef, services: ServicesDep) -> OkResponse:
    await registry_of(services).drain(body.id)
    return OkResponse(ok=True)


@router.post("/cluster/deregister", response_model=OkResponse, include_in_schema=False, dependencies=[MACHINE])
async def deregister(body: RunnerRef, services: ServicesDep) -> OkResponse:
    await registry_of(services).deregister(body.id)
    return OkResponse(ok=True)


@router.get("/runners", response_model=RunnersResponse)
async def list_runners(principal: PrincipalDep, services: ServicesDep) -> RunnersResponse:
    """Every runner with its status (live, draining, dead), load and pool. Operators only (default tenant)."""
    if principal.tenant_id != DEFAULT_TENANT:
        raise NotFound("not found")
    runners = [runner_public(v) for v in await registry_of(services).runners()]
    return RunnersResponse(runners=runners, count=len(runners), has_local=False)
