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
    """The SSE streams open right now (their number is in /health), so a shutdown can end the idle ones."""

    def __init__(self) -> None:
        self.streams: set[EventStream] = set()
        self.closing = False

    @property
    def open(self) -> int:
        return len(self.streams)

    def end_idle(self) -> None:
        """The server is stopping: streams waiting between turns end now, the others after their turn. Without
        this one follower (`ash session tail`, a dashboard page) holds the shutdown for its whole grace period;
        SSE clients reconnect (with Last-Event-ID) to the server that comes back."""
        self.closing = True
        for stream in list(self.streams):
            stream.end_if_idle()


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
        self._waiting: anyio.CancelScope | None = None  # the wait between turns, which a shutdown may cut short

    def end_if_idle(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        if self.counter is not None:
            self.counter.streams.add(self)

        async def write(body: bytes, more: bool = True) -> None:
            with anyio.fail_after(self.write_timeout_s):
                await send({"type": "http.response.body", "body": body, "more_body": more})

        async def stream(cancel: anyio.CancelScope) -> None:
            nonlocal completed
            try:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                # With a turn's first frames (one socket write, one wake-up of the client fewer); at once for a
                # stream that starts between turns, so its client sees a body before the next turn.
                prefix = f"retry: {self.retry_ms}\n\n".encode()
                if self.subscription.between_turns:
                    await write(prefix)
                    prefix = b""
                while True:
                    if not self.subscription.between_turns:
                        frames = await self.subscription.next_frames(self.keepalive_s)
                    elif self.counter is not None and self.counter.closing:
                        break
                    else:
                        with anyio.CancelScope() as waiting:
                            self._waiting = waiting
                            frames = await self.subscription.next_frames(self.keepalive_s)
                        self._waiting = None
                        if waiting.cancelled_caught:
                            break  # the server is stopping (StreamCounter.end_idle)
                    if frames:
                        await write(prefix + b"".join(f.wire() for f in frames))
                    elif self.subscription.done:
                        break
                    else:
                        await write(prefix + b": keepalive\n\n")
                    prefix = b""
                completed = True
                await write(prefix, more=False)
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
                self.counter.streams.discard(self)
            self.subscription.close()
            if not completed and self.on_disconnect is not None:
                with anyio.CancelScope(shield=True):
                    await self.on_disconnect()
