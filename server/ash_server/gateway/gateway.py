"""`Gateway`: what a sandbox may reach outside itself, set up when it starts and torn down when it stops.

Every sandbox gets a model socket (model.py); a sandbox whose agent allows some domains also gets an egress socket
(egress.py). `attach` returns the environment that points the sandbox at them and the network mode its launcher
must apply: no network namespace of the host unless the agent's config says `"full"`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..credentials import CredentialService, server_auth
from ..errors import Invalid, NotFound
from ..observability.metrics import Metrics
from ..settings import DEFAULT_ANTHROPIC_BASE_URL, Settings
from ..store.repository import Store
from .budgets import BudgetLimits, ModelBudgets
from .egress import EgressProxy
from .model import PLACEHOLDER_KEY, ModelGateway, ModelRoute
from .network import NetworkCeilings, NetworkPolicy, parse_network
from .probe import ModelCheck, probe_model
from .usage import CallUsage

log = logging.getLogger(__name__)

MODEL_SOCKET = "model.sock"
EGRESS_SOCKET = "egress.sock"
EGRESS_PORT = 3128  # the proxy's usual port, inside the sandbox's network namespace


@dataclass(frozen=True, slots=True)
class SandboxLink:
    """What the launcher needs from the gateway for one sandbox."""

    env: dict[str, str]
    network: NetworkPolicy


class UsageBook(Protocol):
    """Where a model call's usage is written (sessions/turn_usage.py writes it with its turn)."""

    async def record(self, route: ModelRoute, usage: CallUsage, timeline_json: str) -> None: ...


class StoredUsage:
    """Every call's usage in a transaction of its own."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, route: ModelRoute, usage: CallUsage, timeline_json: str) -> None:
        await self._store.record_usage(
            route.tenant_id, uuid.UUID(route.session_id), route.agent_name, usage.model, usage.metrics(), timeline_json
        )


class Gateway:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        credentials: CredentialService,
        *,
        metrics: Metrics | None = None,
        usage: UsageBook | None = None,
    ) -> None:
        self._store = store
        self._usage = usage or StoredUsage(store)
        self._credentials = credentials
        self._server_auth = server_auth(settings)
        self._upstream_url = settings.anthropic_base_url
        if self._server_auth is None and settings.mode != "coordinator":  # a coordinator's runners call the model
            _warn_no_model_key(settings)
        self.metrics = metrics or Metrics()
        self.model = ModelGateway(
            settings.anthropic_base_url,
            max_request_bytes=settings.gateway_max_request_bytes,
            on_usage=self._record_usage,
            budgets=ModelBudgets(budget_limits(settings), store, self.metrics),
        )
        self.egress = EgressProxy()
        self.network_ceilings = NetworkCeilings(settings.network_ceiling_map)

    async def attach(
        self, sandbox_id: str, directory: Path, *, session_id: str, tenant_id: str, owner: tuple[int, int] | None
    ) -> SandboxLink:
        """Open the sandbox's sockets in its folder, before the sandbox starts; NotFound/Invalid/503 otherwise."""
        session = await self._store.get_session(tenant_id, uuid.UUID(session_id))
        if session is None:
            raise NotFound(f"Session not found: {session_id}", session_id=session_id)
        agent = await self._store.get_agent(tenant_id, session.agent_name)
        return await self.link(
            sandbox_id,
            directory,
            session_id=session_id,
            tenant_id=tenant_id,
            agent_name=session.agent_name,
            network_config=agent.config.get("network") if agent is not None else None,
            credential_id=session.config.get("credentialId"),
            owner=owner,
        )

    async def link(
        self,
        sandbox_id: str,
        directory: Path,
        *,
        session_id: str,
        tenant_id: str,
        agent_name: str,
        network_config: object,
        credential_id: object,
        owner: tuple[int, int] | None,
        assigned: bool = True,
    ) -> SandboxLink:
        """`attach` with everything given: what the sandbox pool uses. `network_config`: an agent's `network`, or a
        policy already made (the operator's, for dependency builds). A sandbox started ahead of its session
        (the warm pool) is linked with `assigned=False`: its model socket refuses requests until `assign`."""
        network = network_config if isinstance(network_config, NetworkPolicy) else parse_network(network_config)
        # Again at every start: a ceiling lowered after the agent was configured applies to it too.
        self.network_ceilings.check(tenant_id, network)
        auth = self._server_auth
        if credential_id:
            try:
                auth = await self._credentials.upstream_auth(tenant_id, str(credential_id))
            except NotFound as exc:
                raise Invalid(
                    f"the credential of this session ({credential_id}) was deleted; start a new session",
                    credential_id=str(credential_id),
                ) from exc
        model_socket = directory / MODEL_SOCKET
        route = ModelRoute(sandbox_id, session_id, tenant_id, agent_name, auth, assigned=assigned)
        await self.model.open(route, model_socket, owner)
        env = {
            # The CLI talks HTTP over this socket; the http:// base URL keeps it from trying TLS on it.
            "ANTHROPIC_UNIX_SOCKET": str(model_socket),
            "ANTHROPIC_BASE_URL": "http://localhost",
            "ANTHROPIC_API_KEY": PLACEHOLDER_KEY,
        }
        if network.mode == "allowlist":
            egress_socket = directory / EGRESS_SOCKET
            try:
                await self.egress.open(sandbox_id, network, egress_socket, owner)
            except BaseException:
                await self.model.close(sandbox_id)
                raise
            env["ASH_EGRESS_SOCKET"] = str(egress_socket)
            # The bridge listens here, in the sandbox's own network namespace; named up front so that commands
            # run through exec (not only the CLI the bridge starts) get the proxy too.
            env["ASH_EGRESS_PORT"] = str(EGRESS_PORT)
            proxy = f"http://127.0.0.1:{EGRESS_PORT}"
            env.update({name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")})
            env.update({name: "localhost,127.0.0.1,::1" for name in ("NO_PROXY", "no_proxy")})
        return SandboxLink(env=env, network=network)

    @property
    def key_configured(self) -> bool:
        """The server has a model key of its own (tenants may still bring theirs: POST /api/credentials)."""
        return self._server_auth is not None

    async def check_model(self) -> ModelCheck:
        return await probe_model(self._upstream_url, self._server_auth)

    def assign(self, sandbox_id: str, session_id: str) -> None:
        """A warm sandbox was claimed: its model traffic belongs to `session_id` from now on."""
        self.model.assign(sandbox_id, session_id)

    async def detach(self, sandbox_id: str) -> None:
        await self.model.close(sandbox_id)
        await self.egress.close(sandbox_id)

    def revoke_credential(self, credential_id: str) -> int:
        return self.model.revoke(credential_id)

    async def revoke_deleted(self) -> int:
        """Revoke the credentials in use here that were deleted or deactivated through another server (a runner
        does this at every heartbeat: a coordinator's DELETE /api/credentials reaches its sandboxes within one
        interval). Returns how many sandboxes lost theirs."""
        in_use: dict[uuid.UUID, str] = {}
        for credential_id in self.model.credentials_in_use():
            with contextlib.suppress(ValueError):
                in_use[uuid.UUID(credential_id)] = credential_id
        usable = await self._store.usable_credential_ids(list(in_use))
        return sum(self.model.revoke(raw) for parsed, raw in in_use.items() if parsed not in usable)

    async def aclose(self) -> None:
        await self.egress.aclose()
        await self.model.aclose()

    async def _record_usage(self, route: ModelRoute, usage: CallUsage) -> None:
        model = usage.model or "unknown"
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_creation", usage.cache_creation_tokens),
            ("cache_read", usage.cache_read_tokens),
        ):
            if count:
                self.metrics.tokens.labels(kind, model).inc(count)
        timeline = {"action": "model_usage", **usage.timeline(), "sandboxId": route.sandbox_id}
        await self._usage.record(route, usage, json.dumps(timeline, separators=(",", ":")))


def budget_limits(settings: Settings) -> BudgetLimits:
    return BudgetLimits(
        max_tokens=settings.gateway_max_tokens,
        calls_per_minute=settings.gateway_calls_per_minute,
        session_tokens=settings.gateway_session_tokens,
        tenant_tokens_per_day=settings.gateway_tenant_tokens_per_day,
        models=tuple(p.strip() for p in settings.gateway_models.split(",") if p.strip()),
    )


def _warn_no_model_key(settings: Settings) -> None:
    """Said at start, so a missing key is not first seen as a failed chat."""
    custom = settings.anthropic_base_url.rstrip("/") != DEFAULT_ANTHROPIC_BASE_URL
    log.warning(
        "no model key: ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN are unset, so messages fail with 'model "
        "authentication failed' unless their session uses a stored credential (POST /api/credentials)%s",
        f" or {settings.anthropic_base_url} adds a key itself" if custom else "",
    )
