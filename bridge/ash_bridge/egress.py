"""The sandbox end of the egress proxy: a loopback TCP port that forwards to the server's `egress.sock`.

HTTP clients know proxies by URL, not by Unix socket. When the agent allows some domains the server gives the
sandbox `ASH_EGRESS_SOCKET`; the bridge listens on 127.0.0.1 (the sandbox's own loopback, in its own network
namespace) and sets `HTTP_PROXY` / `HTTPS_PROXY` for the CLI and everything the agent runs. The bytes are copied
unchanged: the allowlist is enforced on the server's side, never here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
COPY_SIZE = 64 * 1024


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(COPY_SIZE):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        sink.close()


async def _forward(socket_path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
    finally:
        up_writer.close()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def start_forwarder(socket_path: str, port: int = 0) -> asyncio.Server:
    """Listen on loopback and point the proxy variables at it (inherited by the CLI). `port`: the one the server
    named in the sandbox's environment (ASH_EGRESS_PORT), so commands run through exec find the proxy too; the
    sandbox has a network namespace of its own, so it is free unless the agent took it first (then any port)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _forward(socket_path, reader, writer)

    try:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
    except OSError:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
    bound = server.sockets[0].getsockname()[1]
    for name in PROXY_VARIABLES:
        os.environ[name] = f"http://127.0.0.1:{bound}"
    # Loopback stays direct: the proxy could not reach the sandbox's own loopback anyway.
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = "localhost,127.0.0.1,::1"
    return server
