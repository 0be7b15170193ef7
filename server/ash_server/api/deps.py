"""Request dependencies: the authenticated principal and the services built by create_app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ..agents import AgentService
from ..auth import Authenticator, Principal
from ..credentials import CredentialService
from ..gateway import Gateway
from ..sandbox.manager import SandboxManager
from ..sessions.service import SessionService
from ..settings import Settings
from ..store.repository import Store
from .sse import StreamCounter


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    auth: Authenticator
    agents: AgentService
    sessions: SessionService
    sandboxes: SandboxManager
    started_at: float
    credentials: CredentialService
    gateway: Gateway
    streams: StreamCounter = field(default_factory=StreamCounter)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_principal(request: Request) -> Principal:
    services = get_services(request)
    return await services.auth.authenticate(request.headers.get("authorization"))


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
