"""ASGI middleware: the internal endpoints accept only requests signed with ASH_INTERNAL_SECRET (cluster/signing.py).

On a runner that is everything but /health and /metrics (which has its own token); on a coordinator, the runner
endpoints under /api/internal/cluster/. With mutual TLS, a coordinator takes runner traffic on its internal listener
only (ASH_INTERNAL_PORT, client certificate required), and that listener serves nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...cluster.signing import RequestSigner
from ...errors import Unauthorized
from ..errors import error_response

CLUSTER_PREFIX = "/api/internal/cluster/"


def runner_protects(path: str) -> bool:
    return path not in ("/health", "/metrics")


def coordinator_protects(path: str) -> bool:
    return path.startswith(CLUSTER_PREFIX)


class SignedRequests:
    def __init__(
        self,
        app: ASGIApp,
        *,
        signer: RequestSigner,
        protects: Callable[[str], bool],
        max_bytes: int,
        internal_port: int | None = None,
    ) -> None:
        """`internal_port`: the listener that alone serves protected paths (and only those, plus /health)."""
        self.app = app
        self._signer = signer
        self._protects = protects
        self._max_bytes = max_bytes
        self._internal_port = internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        protected = self._protects(path)
        if self._internal_port is not None:
            server = scope.get("server") or ("", 0)
            on_internal = server[1] == self._internal_port
            if on_internal != protected and path != "/health":
                await error_response(404, "not found")(scope, receive, send)
                return
        if not protected:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        try:
            self._signer.check_headers(headers)  # before the body: its size or contents are nobody's business yet
        except Unauthorized as exc:
            await error_response(401, exc.message)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                await error_response(413, f"request body exceeds {self._max_bytes} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        target = scope.get("raw_path") or path.encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        try:
            signed = self._signer.verify(scope["method"], target, body, headers)
        except Unauthorized as exc:
            await error_response(401, exc.message)(scope, receive, send)
            return
        scope.setdefault("state", {})["signed"] = signed
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
