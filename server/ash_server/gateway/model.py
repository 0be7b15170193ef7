"""The model gateway: the host side of each sandbox's `model.sock`, the sandbox's only way to the model.

The Claude Code CLI in a sandbox sends its Messages API requests over that Unix socket (`ANTHROPIC_UNIX_SOCKET`,
`ANTHROPIC_BASE_URL=http://localhost`) with a placeholder key. The gateway drops whatever credential came in, adds
the session's real one and forwards the request upstream; the response goes back unchanged, chunk by chunk as it
arrives, while the usage it reports is read on the way (see usage.py). One socket per sandbox, so the socket a
request came in on says which session it belongs to: nothing in the request is trusted for that.

HTTP/1.1 on the socket is parsed with h11 (no ASGI framework in between); upstream requests go through one pooled
httpx client. See docs/decisions/0005-model-gateway.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import h11
import httpx

from ..credentials import UpstreamAuth
from .budgets import ModelBudgets, Refusal
from .sockets import SandboxSockets
from .usage import CallUsage, UsageMeter

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "sk-ash-gateway-placeholder"
MESSAGES = b"/v1/messages"
ROUTES = frozenset({MESSAGES, b"/v1/messages/count_tokens"})
MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
# Headers that describe one hop, not the message; and the credentials a sandbox may have sent.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {b"host", b"content-length", b"x-api-key", b"authorization", b"accept-encoding"}
# Upstream answers no retry can change. The CLI retries a 401 ten times with back-off (over three minutes for a
# wrong key) unless the answer says `x-should-retry: false`, which the Messages API does not send for a bad key.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 413, 422})
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0)


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Where a sandbox's model traffic belongs and how it is authenticated upstream."""

    sandbox_id: str
    session_id: str
    tenant_id: str
    agent_name: str
    auth: UpstreamAuth | None
    revoked: bool = False
    # False while the sandbox waits in the warm pool for a session: nothing may be spent on its behalf yet.
    assigned: bool = True


UsageSink = Callable[[ModelRoute, CallUsage], Coroutine[Any, Any, None]]


class ModelGateway:
    def __init__(
        self,
        upstream_url: str,
        *,
        max_request_bytes: int,
        on_usage: UsageSink,
        budgets: ModelBudgets | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # A path prefix in the upstream URL is kept: requests go to <upstream>/v1/messages?<query>.
        self._upstream = upstream_url.rstrip("/")
        self._max_request_bytes = max_request_bytes
        self._on_usage = on_usage
        self._budgets = budgets
        self._client = httpx.AsyncClient(
            timeout=UPSTREAM_TIMEOUT,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            transport=transport,
            follow_redirects=False,
            # The server's HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE apply to model traffic, as for any client on the host.
            trust_env=True,
        )
        self._routes: dict[str, ModelRoute] = {}
        self._sockets = SandboxSockets()
        self._recorders: set[asyncio.Task[None]] = set()

    # -- Sockets ------------------------------------------------------------------------------------------------

    async def open(self, route: ModelRoute, path: Path, owner: tuple[int, int] | None) -> None:
        """Listen on `path` for the sandbox of `route`: mode 0600, owned by the sandbox user."""
        await self._sockets.open(
            route.sandbox_id, partial(self._serve, route.sandbox_id), path, owner, limit=MAX_HEAD_BYTES
        )
        self._routes[route.sandbox_id] = route

    async def close(self, sandbox_id: str) -> None:
        """Stop listening and cut the sandbox's requests in flight (their usage so far is still recorded)."""
        route = self._routes.pop(sandbox_id, None)
        if route is not None and self._budgets is not None:
            self._budgets.forget(route.session_id)
        await self._sockets.close(sandbox_id)

    def assign(self, sandbox_id: str, session_id: str) -> None:
        """Point the sandbox's socket at the session that claimed it (the warm pool's hand-over)."""
        route = self._routes.get(sandbox_id)
        if route is not None:
            self._routes[sandbox_id] = replace(route, session_id=session_id, assigned=True)

    def credentials_in_use(self) -> set[str]:
        """The stored credentials live sandboxes' model traffic is authenticated with."""
        return {r.auth.credential_id for r in self._routes.values() if r.auth is not None and r.auth.credential_id}

    def revoke(self, credential_id: str) -> int:
        """A deleted credential stops working at once for the sandboxes that hold it; returns how many."""
        revoked = 0
        for sandbox_id, route in list(self._routes.items()):
            if route.auth is not None and route.auth.credential_id == credential_id:
                self._routes[sandbox_id] = replace(route, auth=None, revoked=True)
                revoked += 1
        return revoked

    async def aclose(self) -> None:
        for sandbox_id in self._sockets.sandbox_ids():
            await self.close(sandbox_id)
        if self._recorders:
            await asyncio.wait(list(self._recorders), timeout=10)
        await self._client.aclose()

    # -- One connection -----------------------------------------------------------------------------------------

    async def _serve(self, sandbox_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._sockets.connection(sandbox_id) as tracked:
            if tracked:
                await self._converse(sandbox_id, reader, writer)
            else:
                writer.close()

    async def _converse(self, sandbox_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while True:
                event = await _next_event(conn, reader)
                if not isinstance(event, h11.Request):
                    return
                if not await self._exchange(sandbox_id, conn, reader, writer, event):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(Exception):
                await _send_error(conn, writer, Refusal(400, "invalid_request_error", f"bad request: {exc}"))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _exchange(
        self,
        sandbox_id: str,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
    ) -> bool:
        """Answer one request. False when the connection must close afterwards."""
        path = request.target.split(b"?", 1)[0]
        try:
            if request.method != b"POST" or path not in ROUTES:
                raise Refusal(404, "not_found_error", "the model gateway forwards only POST /v1/messages")
            body = await self._read_body(conn, reader, writer, request)
            route = self._routes.get(sandbox_id)
            if route is None:
                raise Refusal(503, "api_error", "this sandbox is shutting down")
            if route.revoked:
                raise Refusal(401, "authentication_error", "the credential of this session was deleted")
            if not route.assigned:
                raise Refusal(503, "api_error", "this sandbox is not assigned to a session yet")
            if self._budgets is not None:
                await self._budgets.admit(route.tenant_id, route.session_id, body, spends=path == MESSAGES)
        except Refusal as refusal:
            await _send_error(conn, writer, refusal)
            return conn.their_state is h11.DONE  # an unread body leaves the connection unusable
        headers = [(k, v) for k, v in request.headers.raw_items() if k.lower() not in DROPPED_REQUEST_HEADERS]
        # Identity: the relayed bytes stay exactly what upstream sent, and usage can be read from them.
        headers.append((b"accept-encoding", b"identity"))
        if route.auth is not None:
            headers.append((route.auth.header.encode(), route.auth.value.encode()))
        upstream = self._client.build_request(
            "POST", self._upstream + request.target.decode("ascii", "replace"), headers=headers, content=body
        )
        try:
            response = await self._client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("model gateway: upstream request of sandbox %s failed: %r", sandbox_id, exc)
            unreachable = Refusal(502, "api_error", f"model gateway: upstream unreachable ({exc!r})")
            await _send_error(conn, writer, unreachable)
            return True
        if response.status_code in (401, 403):
            log.warning(
                "model gateway: the model refused the credential of session %s (HTTP %d): check the model key",
                route.session_id,
                response.status_code,
            )
        meter: UsageMeter | None = None
        if path == MESSAGES and response.status_code == 200:
            streaming = response.headers.get("content-type", "").startswith("text/event-stream")
            meter = UsageMeter(streaming=streaming)
        try:
            return await self._relay(conn, writer, response, meter)
        finally:
            await response.aclose()
            if meter is not None:
                self._record(route, meter.finish())

    async def _read_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: h11.Request
    ) -> bytes:
        limit = self._max_request_bytes
        for name, value in request.headers:
            if name == b"content-length" and int(value) > limit:
                raise Refusal(413, "request_too_large", f"request body exceeds the gateway's {limit} bytes")
        if conn.client_is_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await _next_event(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise Refusal(413, "request_too_large", f"request body exceeds the gateway's {limit} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise ConnectionError("client went away before the request body ended")

    async def _relay(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: httpx.Response, meter: UsageMeter | None
    ) -> bool:
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
        if response.status_code in FINAL_STATUSES:
            headers = [(k, v) for k, v in headers if k.lower() != b"x-should-retry"]
            headers.append((b"x-should-retry", b"false"))
        writer.write(
            conn.send(h11.Response(status_code=response.status_code, headers=headers, reason=response.reason_phrase))
        )
        try:
            async for chunk in response.aiter_raw():
                writer.write(conn.send(h11.Data(data=chunk)))
                if meter is not None:
                    meter.feed(chunk)
                await writer.drain()
        except httpx.HTTPError as exc:
            # Mid-stream there is no way to answer with an error: cut the connection so the client sees it.
            log.warning("model gateway: upstream stream broke: %r", exc)
            return False
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        return True

    def _record(self, route: ModelRoute, usage: CallUsage) -> None:
        if not usage.seen:
            return
        if self._budgets is not None:
            self._budgets.record(route.tenant_id, route.session_id, usage.tokens)
        task = asyncio.create_task(self._on_usage(route, usage))
        self._recorders.add(task)
        task.add_done_callback(self._recorded)

    def _recorded(self, task: asyncio.Task[None]) -> None:
        self._recorders.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not record model usage", exc_info=task.exception())


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(READ_SIZE))


async def _send_error(conn: h11.Connection, writer: asyncio.StreamWriter, refusal: Refusal) -> None:
    """An error in the Messages API's own shape, so the CLI reports it like any API error."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = json.dumps({"type": "error", "error": {"type": refusal.kind, "message": refusal.message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-should-retry", b"true" if refusal.status >= 500 else b"false"),
        *((k.encode(), v.encode()) for k, v in refusal.headers.items()),
    ]
    writer.write(conn.send(h11.Response(status_code=refusal.status, headers=headers)))
    writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
