"""Server-Sent Events for turns: ids, keepalives, a write timeout, and knowing when the client went away.

Written as a plain ASGI response (not StreamingResponse) for two things it does not offer: every write is bounded by
a timeout (a client that stops reading is dropped instead of pinning the stream), and a keepalive comment is sent
while the turn is quiet so proxies and load balancers keep the connection open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..sessions.turn import Subscription

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]


class StreamCounter:
    """How many SSE streams are open right now (reported in /health)."""

    def __init__(self) -> None:
        self.open = 0


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        subscription: Subscription,
        *,
        keepalive_s: float,
        write_timeout_s: float,
        retry_ms: int,
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
        counter: StreamCounter | None = None,
    ) -> None:
        super().__init__(status_code=200, media_type=self.media_type)
        self.counter = counter
        self.subscription = subscription
        self.keepalive_s = keepalive_s
        self.write_timeout_s = write_timeout_s
        self.retry_ms = retry_ms
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        if self.counter is not None:
            self.counter.open += 1

        async def write(body: bytes, more: bool = True) -> None:
            with anyio.fail_after(self.write_timeout_s):
                await send({"type": "http.response.body", "body": body, "more_body": more})

        async def stream(cancel: anyio.CancelScope) -> None:
            nonlocal completed
            try:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                await write(f"retry: {self.retry_ms}\n\n".encode())
                while True:
                    frames = await self.subscription.next_frames(self.keepalive_s)
                    if frames:
                        await write(b"".join(f.wire() for f in frames))
                    elif self.subscription.done:
                        break
                    else:
                        await write(b": keepalive\n\n")
                completed = True
                await write(b"", more=False)
            except (TimeoutError, OSError):
                pass  # the client stopped reading (or the connection broke): drop it; the turn goes on
            finally:
                cancel.cancel()

        async def watch_disconnect(cancel: anyio.CancelScope) -> None:
            while True:
                message: dict[str, Any] = dict(await receive())
                if message["type"] == "http.disconnect":
                    cancel.cancel()
                    return

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(stream, group.cancel_scope)
                group.start_soon(watch_disconnect, group.cancel_scope)
        finally:
            if self.counter is not None:
                self.counter.open -= 1
            self.subscription.close()
            if not completed and self.on_disconnect is not None:
                with anyio.CancelScope(shield=True):
                    await self.on_disconnect()
