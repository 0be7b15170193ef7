"""Bounds on what a client may send before its request reaches the app: the request line, the header count, the
header bytes, and the time to send them.

uvicorn's httptools protocol keeps every header line it is given and has no deadline for headers: one connection
streaming header lines for 20 s took the server from 265 MB to 1.87 GB, unauthenticated (the app, which checks
keys, never sees a request that has no end). This subclass counts as the parser goes and answers 414, 431 or 408
with `Connection: close` the moment a bound is passed, so what a connection costs is bounded before any app code.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# After answering, the connection is read (and what it sends dropped) this long before it is closed: closing with
# unread data would make the kernel send a reset, which can destroy the answer before the client has read it.
LINGER_S = 1.0
REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    max_url_bytes: int
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float


class Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that was answered already."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: HeaderLimits  # set on the subclass bounded_protocol() makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._url_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        self._header_deadline: asyncio.TimerHandle | None = None

    # -- the deadline: from the connection (or a request's first byte) until its headers are complete ----------

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None  # armed only while a request's headers are incomplete
        self._answer(408, f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- parser callbacks ---------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a Refused raised in a callback reaches uvicorn as a parser error
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._header_bytes = self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            self._refuse(414, f"the request target is longer than {self.limits.max_url_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF, as on the wire
        if self._header_count > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} request headers")
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"the request headers are larger than {self.limits.max_header_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _refuse(self, status: int, message: str) -> None:
        """Answer and close from a parser callback, then stop the parser (raising is how httptools is stopped)."""
        self._answer(status, message)
        raise Refused(message)

    def _answer(self, status: int, message: str) -> None:
        if not self._refused:
            self._refused = True
            self._disarm()
            body = json.dumps({"error": message, "statusCode": status}).encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body)
            )
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(LINGER_S, self.transport.close)
            else:
                self.transport.close()


def bounded_protocol(limits: HeaderLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class uvicorn is given (`http=`): uvicorn instantiates it per connection."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
