"""The signature of an internal request is checked before its body is read or validated: an unsigned caller is told
401 whatever it sends, without the server reading (or sizing, or parsing) what it sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from ash_server.api.middleware.signed import SignedRequests, runner_protects
from ash_server.cluster.signing import RequestSigner

SECRET = "s" * 64


class Recorder:
    """The app behind the middleware: records the bodies it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict[str, Any], int, Recorder]:
    """Run one request through the middleware: (status, body, chunks read, the app)."""
    app = Recorder()
    middleware = SignedRequests(app, signer=RequestSigner(SECRET), protects=runner_protects, max_bytes=1024)
    read = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/sessions",
        "raw_path": b"/api/sessions",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(middleware(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(body) if status != 200 else {}, read, app


def test_an_unsigned_request_is_refused_before_its_body_is_read() -> None:
    oversized = [b"x" * 1000] * 5  # over max_bytes: read, it would be a 413
    status, body, read, app = call({"content-type": "application/json"}, oversized)
    assert (status, body["statusCode"], read, app.bodies) == (401, 401, 0, [])
    assert "not signed" in body["error"]


def test_a_stale_or_nonceless_signature_is_refused_before_the_body() -> None:
    headers = RequestSigner(SECRET).sign("POST", b"/api/sessions", b"{}")
    stale = {**headers, "x-ash-timestamp": "1000.000"}
    status, body, read, _ = call(stale, [b"{}"])
    assert (status, read) == (401, 0) and "timestamp" in body["error"]
    nonceless = {**headers, "x-ash-nonce": ""}
    status, body, read, _ = call(nonceless, [b"{}"])
    assert (status, read) == (401, 0) and "nonce" in body["error"]


def test_a_signed_request_reaches_the_app_with_its_body_and_a_tampered_one_does_not() -> None:
    payload = b'{"agent": "a"}'
    headers = RequestSigner(SECRET).sign("POST", b"/api/sessions", payload)
    status, _, _, app = call(headers, [payload[:5], payload[5:]])
    assert status == 200 and app.bodies == [payload]
    status, body, _, app = call(headers, [payload + b" "])
    assert status == 401 and "bad signature" in body["error"] and app.bodies == []


def test_a_signed_body_over_the_limit_is_413() -> None:
    payload = b"x" * 2000
    status, body, _, app = call(RequestSigner(SECRET).sign("POST", b"/api/sessions", payload), [payload])
    assert status == 413 and body["statusCode"] == 413 and app.bodies == []
