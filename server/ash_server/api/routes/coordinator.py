"""/api/sessions on a coordinator: sessions run on runners, so every request about one goes to its runner.

A new session goes to the least-loaded live runner (cluster/registry.py); a request for an existing one goes to the
runner that runs it, or, if that runner is dead or gone, to a live runner the session moves to. The runner answers
exactly as a standalone server would, and the answer (an SSE stream included) is relayed as it comes
(cluster/proxy.py). Listing, and reading a session, its messages and its events, read the shared database directly.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ...auth import Principal
from ...cluster.proxy import FORWARDED_REQUEST_HEADERS, RELAYED_RESPONSE_HEADERS, RunnerClient, RunnerUnreachable
from ...cluster.registry import Registry
from ...errors import Invalid, NotFound
from ...ids import parse_uuid
from ...store.models import Runner
from ..deps import PrincipalDep, Services, ServicesDep
from ..schemas import EventsResponse, MessagesResponse, SessionResponse, SessionsResponse, SessionsWithTotalResponse
from . import sessions

router = APIRouter(prefix="/api/sessions", tags=["sessions"])
PROXIED_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


def _cluster(services: Services) -> tuple[Registry, RunnerClient]:
    assert services.registry is not None and services.runner_client is not None
    return services.registry, services.runner_client


async def _forward(
    services: Services, runner: Runner, request: Request, principal: Principal, body: bytes
) -> httpx.Response:
    _, client = _cluster(services)
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
    return await client.send(
        client.build(
            runner.url,
            request.method,
            request.url.path,
            request.scope.get("query_string", b""),
            body,
            headers=headers,
            tenant=principal.tenant_id,
            key_id=principal.key_id,
        )
    )


def relay(upstream: httpx.Response) -> Response:
    """The runner's response, streamed to the client as it arrives; the upstream connection closes when the
    client goes away."""
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in RELAYED_RESPONSE_HEADERS}

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return  # the runner went away mid-stream: the client sees the stream end (and reattaches)
        finally:
            await upstream.aclose()

    return StreamingResponse(body(), status_code=upstream.status_code, headers=headers)


@router.post("", status_code=201, include_in_schema=False)
async def create_session(request: Request, principal: PrincipalDep, services: ServicesDep) -> Response:
    services.rate_limits.sessions.check(principal.key_id, "sessions")
    registry, _ = _cluster(services)
    body = await request.body()
    return relay(await registry.send_placed(lambda runner: _forward(services, runner, request, principal, body)))


# Reads of what the database holds are answered here, even while the session's runner is down.
router.add_api_route(
    "", sessions.list_sessions, methods=["GET"], response_model=SessionsResponse | SessionsWithTotalResponse
)
router.add_api_route("/{session_id}", sessions.get_session, methods=["GET"], response_model=SessionResponse)
router.add_api_route("/{session_id}/messages", sessions.list_messages, methods=["GET"], response_model=MessagesResponse)
router.add_api_route("/{session_id}/events", sessions.list_events, methods=["GET"], response_model=EventsResponse)


async def _session_request(session_id: str, request: Request, principal: Principal, services: Services) -> Response:
    sid = parse_uuid(session_id)
    if sid is None:
        raise Invalid(f"{session_id!r} is not a session id")
    # The same per-key limits as a standalone server's routes (runners apply none).
    if request.method == "POST" and request.url.path.endswith("/messages"):
        services.rate_limits.messages.check(principal.key_id, "messages")
    elif request.method == "POST" and request.url.path.endswith("/fork"):
        services.rate_limits.sessions.check(principal.key_id, "sessions")
    body = await request.body()
    upstream = await _remembered(sid, request, principal, services, body)
    if upstream is not None:
        return relay(upstream)
    found = await services.store.session_and_runner(principal.tenant_id, sid)
    if found is None:
        raise NotFound(f"Session not found: {sid}", session_id=str(sid))
    session, runner_row = found
    registry, _ = _cluster(services)
    return relay(
        await registry.send_routed(
            session, runner_row, lambda runner: _forward(services, runner, request, principal, body)
        )
    )


async def _remembered(
    sid: uuid.UUID, request: Request, principal: Principal, services: Services, body: bytes
) -> httpx.Response | None:
    """The request sent to the runner this coordinator last routed the session to, without a database read; None
    when it remembers none, or that runner says the session moved (nothing was done there: it goes the database
    way). A runner that cannot be reached is a 503 as on the database path: the request may have reached it."""
    registry, _ = _cluster(services)
    runner = await registry.remembered_runner(principal.tenant_id, sid)
    if runner is None:
        return None
    try:
        upstream = await _forward(services, runner, request, principal, body)
    except RunnerUnreachable:
        registry.forget_route(principal.tenant_id, sid)
        raise
    if upstream.status_code == 409 and "x-ash-session-moved" in upstream.headers:
        await upstream.aclose()
        registry.forget_route(principal.tenant_id, sid)
        return None
    if upstream.status_code == 404:
        registry.forget_route(principal.tenant_id, sid)
    return upstream


@router.api_route("/{session_id}", methods=PROXIED_METHODS, include_in_schema=False)
async def session_root(session_id: str, request: Request, principal: PrincipalDep, services: ServicesDep) -> Response:
    return await _session_request(session_id, request, principal, services)


@router.api_route("/{session_id}/{rest:path}", methods=PROXIED_METHODS, include_in_schema=False)
async def session_path(
    session_id: str, rest: str, request: Request, principal: PrincipalDep, services: ServicesDep
) -> Response:
    return await _session_request(session_id, request, principal, services)
