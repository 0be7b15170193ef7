"""The runner's side: register with the coordinator, report load and liveness, drop sessions that moved, drain.

A runner registers at start (retrying until a coordinator answers), then heartbeats every ASH_HEARTBEAT_INTERVAL_MS
with its pool's counts. A heartbeat the coordinator refuses (it does not know the runner, or declared it dead after
missed heartbeats) makes the runner register again by itself, and first drop every sandbox of a session that
coordinators moved elsewhere meanwhile: a runner that comes back never runs a second copy of a session. On SIGTERM
it says it is draining (no new sessions), finishes and snapshots what it runs, and deregisters. Each heartbeat also
revokes, in its model gateway, the credentials deleted through a coordinator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from .. import __version__
from ..gateway import Gateway
from ..sandbox.pool import SandboxPool
from ..sessions.service import SessionService
from ..settings import Settings
from . import tls
from .load import CreateLoad
from .signing import RequestSigner

log = logging.getLogger(__name__)

REGISTER_BACKOFF_MAX_S = 10.0


class CoordinatorRefused(Exception):
    pass


class RunnerAgent:
    def __init__(
        self,
        settings: Settings,
        signer: RequestSigner,
        sessions: SessionService,
        pool: SandboxPool,
        gateway: Gateway,
        creates: CreateLoad,
    ) -> None:
        assert settings.server_url is not None
        self.runner_id = settings.effective_runner_id
        self.url = settings.runner_url
        self._max_sandboxes = pool.max_sandboxes
        self._interval_s = settings.heartbeat_interval_ms / 1000
        self._signer = signer
        self._sessions = sessions
        self._pool = pool
        self._gateway = gateway
        self._creates = creates
        context = tls.client_context(settings)
        self._client = httpx.AsyncClient(
            base_url=settings.server_url.rstrip("/"),
            verify=context if context is not None else True,
            timeout=httpx.Timeout(10.0),
        )
        self.registered = asyncio.Event()

    async def _post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        body = json.dumps(payload).encode()
        request = self._client.build_request(
            "POST", f"/api/internal/cluster/{path}", content=body, headers={"content-type": "application/json"}
        )
        request.headers.update(self._signer.sign("POST", request.url.raw_path, body))
        return await self._client.send(request)

    async def register(self) -> None:
        self._creates.reset()
        response = await self._post(
            "register",
            {"id": self.runner_id, "url": self.url, "maxSandboxes": self._max_sandboxes, "version": __version__},
        )
        if response.status_code != 200:
            raise CoordinatorRefused(f"registration refused: {response.status_code} {response.text[:200]}")
        self.registered.set()
        log.info("registered with the coordinator as runner %s (%s)", self.runner_id, self.url)

    async def heartbeat(self) -> None:
        sandboxes, received = self._creates.load(self._pool)
        stats = await self._pool.stats()
        response = await self._post(
            "heartbeat", {"id": self.runner_id, "sandboxes": sandboxes, "received": received, "stats": stats}
        )
        if response.status_code == 404:
            log.warning("the coordinator does not know this runner (declared dead?); registering again")
            self.registered.clear()
            await self._sessions.drop_moved()
            await self.register()
        elif response.status_code != 200:
            raise CoordinatorRefused(f"heartbeat refused: {response.status_code} {response.text[:200]}")

    async def run(self) -> None:
        """Register (with backoff), then heartbeat until cancelled."""
        delay = 0.2
        while not self.registered.is_set():
            try:
                await self.register()
            except (httpx.HTTPError, CoordinatorRefused) as exc:
                log.warning("cannot register with the coordinator yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTER_BACKOFF_MAX_S)
        failing = False
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.heartbeat()
                await self._sessions.drop_moved()
                await self._gateway.revoke_deleted()
                if failing:
                    log.info("heartbeats reach the coordinator again")
                failing = False
            except (httpx.HTTPError, CoordinatorRefused) as exc:
                if not failing:
                    log.warning("heartbeat failed: %s", exc)
                failing = True
            except Exception:
                log.exception("heartbeat failed")

    async def drain(self) -> None:
        """Best effort: the coordinator stops sending new sessions here."""
        try:
            await self._post("drain", {"id": self.runner_id})
        except httpx.HTTPError as exc:
            log.warning("could not tell the coordinator this runner is draining: %s", exc)

    async def deregister(self) -> None:
        try:
            await self._post("deregister", {"id": self.runner_id})
        except httpx.HTTPError as exc:
            log.warning("could not deregister from the coordinator: %s", exc)
        await self._client.aclose()
