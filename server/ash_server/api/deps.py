"""Request dependencies: the authenticated principal and the services built by create_app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ..agent_versions import AgentVersions
from ..agents import AgentService
from ..attachments import AttachmentService
from ..auth import Authenticator, Principal
from ..cluster.proxy import RunnerClient
from ..cluster.registry import Registry
from ..cluster.runner import RunnerAgent
from ..credentials import CredentialService
from ..errors import Unauthorized
from ..evals.runner import EvalRunner
from ..gateway import Gateway
from ..ratelimit import RateLimits
from ..sandbox.manager import SandboxManager
from ..sandbox.pool import SandboxPool
from ..sandbox.warm import WarmPool
from ..sessions.service import SessionService
from ..settings import Settings
from ..snapshots.service import SnapshotService
from ..store.repository import Store
from .sse import StreamCounter


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    auth: Authenticator
    agents: AgentService
    agent_versions: AgentVersions
    sessions: SessionService
    sandboxes: SandboxManager
    pool: SandboxPool
    warm: WarmPool
    snapshots: SnapshotService
    started_at: float
    credentials: CredentialService
    gateway: Gateway
    # Served by standalone servers: on a coordinator sessions (and so their attachments) live on the runners.
    attachments: AttachmentService
    streams: StreamCounter = field(default_factory=StreamCounter)
    rate_limits: RateLimits = field(default_factory=RateLimits.unlimited)
    # Coordinator mode: the runners and the client that forwards to them. Runner mode: the registration agent.
    registry: Registry | None = None
    runner_client: RunnerClient | None = None
    runner_agent: RunnerAgent | None = None
    # Standalone mode: the eval runs' background runner.
    evals: EvalRunner | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def services_dependency(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
    return get_services(request)


async def get_principal(request: Request) -> Principal:
    services = get_services(request)
    if services.settings.mode == "runner":
        # A runner serves coordinators only: they sign each request with the principal they authenticated.
        signed: Principal | None = getattr(request.state, "signed", None)
        if signed is None or not signed.tenant_id:
            raise Unauthorized("this runner serves coordinators only")
        return signed
    # The client as ASH_TRUSTED_PROXIES lets us see it (api/middleware/network.py rewrote the scope for trusted
    # proxies).
    client_ip = request.client.host if request.client is not None else None
    return await services.auth.authenticate(request.headers.get("authorization"), client_ip)


async def limit_session_creation(principal: Annotated[Principal, Depends(get_principal)], request: Request) -> None:
    get_services(request).rate_limits.sessions.check(principal.key_id, "sessions")


async def limit_messages(principal: Annotated[Principal, Depends(get_principal)], request: Request) -> None:
    get_services(request).rate_limits.messages.check(principal.key_id, "messages")


ServicesDep = Annotated[Services, Depends(services_dependency)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
# Per-key abuse limits (429 with Retry-After), as route dependencies: `dependencies=[SESSION_RATE_LIMIT]`.
SESSION_RATE_LIMIT = Depends(limit_session_creation)
MESSAGE_RATE_LIMIT = Depends(limit_messages)
