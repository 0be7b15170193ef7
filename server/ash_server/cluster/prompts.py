"""Client-less prompts on a coordinator: the queue worker's and eval runs' sessions live on runners.

`RunnerSessions` does what a client of the coordinator would: a new session goes to the least-loaded live runner,
everything about an existing one to the runner that runs it (routed as api/routes/coordinator.py routes a client's
request, a move included), each request signed for the item's tenant. A turn's stream is read to its `done` and
summed up as on a standalone server (sessions/prompt.py). A runner's `{error, statusCode}` comes back as the same
error class, so the worker treats a busy session (409), a gone agent (404) or a dead runner (503) alike everywhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import EventSource

from ..errors import AshError, Conflict, Gone, Invalid, NotFound, PayloadTooLarge
from ..sessions.prompt import PromptOutcome, take_frame
from ..store.models import Runner
from ..store.repository import Store
from .proxy import RunnerClient
from .registry import Registry

# The principal a runner sees for these requests: the tenant's, with no API key behind it.
KEY_ID = "ash-coordinator"
ERRORS: dict[int, type[AshError]] = {400: Invalid, 404: NotFound, 409: Conflict, 410: Gone, 413: PayloadTooLarge}


class RunnerError(AshError):
    """A runner answered with an error other than those above (a 5xx): worth another attempt later."""

    status_code = 502


class RunnerSessions:
    def __init__(self, store: Store, registry: Registry, client: RunnerClient) -> None:
        self._store = store
        self._registry = registry
        self._client = client

    async def open(self, tenant_id: str, agent_name: str) -> uuid.UUID:
        body = _dumps({"agent": agent_name})
        response = await self._registry.send_placed(
            lambda runner: self._send(runner, "POST", "/api/sessions", body, tenant_id)
        )
        try:
            created = await _json(response)
        finally:
            await response.aclose()
        return uuid.UUID(str(created["session"]["id"]))

    async def status(self, tenant_id: str, session_id: uuid.UUID) -> str:
        session = await self._store.get_session(tenant_id, session_id)
        if session is None:
            raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
        return session.status

    async def resume(self, tenant_id: str, session_id: uuid.UUID) -> None:
        async with self._session_request(tenant_id, session_id, "POST", "resume", b"") as response:
            await _json(response)

    async def end(self, tenant_id: str, session_id: uuid.UUID) -> None:
        async with self._session_request(tenant_id, session_id, "DELETE", "", b"") as response:
            await _json(response)

    async def prompt(self, tenant_id: str, session_id: uuid.UUID, content: str) -> PromptOutcome:
        body = _dumps({"content": content})
        outcome = PromptOutcome(session_id=session_id)
        async with self._session_request(tenant_id, session_id, "POST", "messages", body) as response:
            if response.status_code != 200:
                await _json(response)  # raises the runner's error
            finished = False
            try:
                async for event in EventSource(response).aiter_sse():
                    if event.event == "done":
                        finished = True
                        break
                    try:
                        data = json.loads(event.data) if event.data else None
                    except ValueError:
                        continue
                    take_frame(outcome, event.event, data)
            except httpx.HTTPError as exc:
                raise RunnerError(f"the runner's stream broke off: {type(exc).__name__}") from exc
            if not finished:
                # The runner went away mid-turn: the turn may be lost; the worker tries again.
                raise RunnerError("the runner's stream ended before the turn was done")
        return outcome

    @asynccontextmanager
    async def _session_request(
        self, tenant_id: str, session_id: uuid.UUID, method: str, action: str, body: bytes
    ) -> AsyncIterator[httpx.Response]:
        """A request about an existing session, to its runner; routed once more if that runner says the session
        moved meanwhile."""
        found = await self._store.session_and_runner(tenant_id, session_id)
        if found is None:
            raise NotFound(f"Session not found: {session_id}", session_id=str(session_id))
        session, runner_row = found
        path = f"/api/sessions/{session_id}" + (f"/{action}" if action else "")
        response = await self._registry.send_routed(
            session, runner_row, lambda runner: self._send(runner, method, path, body, tenant_id)
        )
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(self, runner: Runner, method: str, path: str, body: bytes, tenant_id: str) -> httpx.Response:
        headers = {"content-type": "application/json"} if body else {}
        request = self._client.build(
            runner.url, method, path, b"", body, headers=headers, tenant=tenant_id, key_id=KEY_ID
        )
        return await self._client.send(request)


def _dumps(body: dict[str, str]) -> bytes:
    return json.dumps(body).encode()


async def _json(response: httpx.Response) -> dict[str, Any]:
    """The runner's JSON answer; its error as the matching AshError."""
    raw = await response.aread()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    if response.is_success:
        return body if isinstance(body, dict) else {}
    message = str(body.get("error") if isinstance(body, dict) else "") or f"the runner answered {response.status_code}"
    raise ERRORS.get(response.status_code, RunnerError)(message, status=response.status_code)
