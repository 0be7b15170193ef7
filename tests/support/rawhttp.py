"""A raw HTTP/1.1 client (h11) for Unix sockets: what a test needs to see bytes exactly as a server sent them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)


async def request(
    socket: Path,
    target: str,
    content: bytes = b"",
    *,
    method: str = "POST",
    headers: list[tuple[str, str]] | None = None,
    on_data: Callable[[bytes], None] | None = None,
    again: int = 1,
) -> list[Response]:
    """`again` requests on one keep-alive connection, read with h11 as a client."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    conn = h11.Connection(h11.CLIENT)
    responses = []
    try:
        for _ in range(again):
            sent = [("host", "localhost"), ("content-length", str(len(content))), *(headers or [])]
            writer.write(conn.send(h11.Request(method=method, target=target, headers=sent)))
            writer.write(conn.send(h11.Data(data=content)) if content else b"")
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            response: Response | None = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    response = Response(event.status_code, dict(event.headers), b"")
                elif isinstance(event, h11.Data):
                    assert response is not None
                    response.chunks.append(bytes(event.data))
                    response.body += bytes(event.data)
                    if on_data is not None:
                        on_data(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            assert response is not None
            responses.append(response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    finally:
        writer.close()
    return responses
