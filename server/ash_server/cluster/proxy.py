"""Forwarding a session's request from a coordinator to its runner, streaming both ways.

The runner serves the same session API as a standalone server; the coordinator signs each forwarded request with
the principal it authenticated (cluster/signing.py) and relays the response as it comes. A Server-Sent Events
stream is relayed chunk by chunk, never buffered: a client that reads slowly stops the coordinator reading from the
runner, and TCP carries that back to the runner's stream, whose sender lag holds the turn (backpressure intact).
"""

from __future__ import annotations

import httpx

from ..errors import AshError
from ..settings import Settings
from . import tls
from .signing import RequestSigner

# Request headers a runner needs to serve the request as the client made it.
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "last-event-id", "x-request-id", "traceparent", "tracestate")
# Response headers that mean something to the client (hop-by-hop and server-specific ones stay behind).
RELAYED_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "content-disposition",
    "cache-control",
    "x-accel-buffering",
    "retry-after",
    "x-ash-session-moved",
)


class RunnerUnreachable(AshError):
    status_code = 503

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class RunnerClient:
    """HTTP(S) to runners: one pooled client for every runner, signed requests, mutual TLS when configured."""

    def __init__(self, settings: Settings, signer: RequestSigner) -> None:
        self._signer = signer
        context = tls.client_context(settings)
        self._client = httpx.AsyncClient(
            verify=context if context is not None else True,
            # No read timeout: a turn streams for as long as the agent works (the runner sends keepalives).
            timeout=httpx.Timeout(connect=5.0, read=None, write=60.0, pool=30.0),
            limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def build(
        self,
        base_url: str,
        method: str,
        path: str,
        query: bytes,
        body: bytes,
        *,
        headers: dict[str, str],
        tenant: str = "",
        key_id: str = "",
    ) -> httpx.Request:
        url = httpx.URL(base_url.rstrip("/") + path, query=query) if query else httpx.URL(base_url.rstrip("/") + path)
        request = self._client.build_request(
            method, url, content=body, headers={**headers, "accept-encoding": "identity"}
        )
        request.headers.update(self._signer.sign(method, request.url.raw_path, body, tenant=tenant, key_id=key_id))
        return request

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send and return the response with its body still to be read. RunnerUnreachable (503) when the runner
        cannot be reached at all: nothing was delivered, so the caller may try another runner."""
        try:
            return await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise RunnerUnreachable(f"runner at {request.url.host} cannot be reached: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RunnerUnreachable(f"runner at {request.url.host} failed: {type(exc).__name__}") from exc
