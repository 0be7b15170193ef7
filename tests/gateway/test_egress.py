"""The egress proxy on a real Unix socket, in front of two HTTP servers on loopback (one allowed, one not).

There is no internet here, so the allowed destinations are local: the allowlist names them literally
(`localhost:PORT`), which is also the only way a non-public address can be allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ash_server.gateway.egress import EgressProxy
from ash_server.gateway.network import parse_network
from tests.support.server import short_tempdir


@pytest.fixture
async def proxy(targets: tuple[int, int]) -> AsyncIterator[Path]:
    allowed, _ = targets
    folder = short_tempdir()
    egress = EgressProxy(connect_timeout=5)
    policy = parse_network({"allow": [f"localhost:{allowed}", f"{socket.gethostname()}:{allowed}"]})
    await egress.open("sbx-e", policy, folder / "egress.sock", None)
    try:
        yield folder / "egress.sock"
    finally:
        await egress.aclose()
        shutil.rmtree(folder, ignore_errors=True)


async def exchange(path: Path, head: str, then: str | None = None) -> tuple[str, str]:
    """Send a proxy request; for CONNECT, `then` is sent through the tunnel once it is open."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(head.encode())
        await writer.drain()
        if then is not None:
            status = (await reader.readuntil(b"\r\n\r\n")).decode()
            if " 200 " not in status.split("\r\n")[0]:
                return status + (await reader.read()).decode(), ""
            writer.write(then.encode())
            await writer.drain()
            return status, (await reader.read()).decode()
        return (await reader.read()).decode(), ""
    finally:
        writer.close()


async def test_plain_http_to_an_allowed_host(proxy: Path, targets: tuple[int, int]) -> None:
    allowed, _ = targets
    reply, _ = await exchange(proxy, f"GET http://localhost:{allowed}/x HTTP/1.1\r\nHost: localhost:{allowed}\r\n\r\n")
    assert reply.startswith("HTTP/1.0 200") and reply.endswith(f"hello from {allowed} host=localhost:{allowed}")


async def test_connect_to_an_allowed_host(proxy: Path, targets: tuple[int, int]) -> None:
    allowed, _ = targets
    status, tunnelled = await exchange(
        proxy,
        f"CONNECT localhost:{allowed} HTTP/1.1\r\nHost: localhost:{allowed}\r\n\r\n",
        then=f"GET / HTTP/1.1\r\nHost: localhost:{allowed}\r\nConnection: close\r\n\r\n",
    )
    assert status.startswith("HTTP/1.1 200") and tunnelled.endswith(f"hello from {allowed} host=localhost:{allowed}")


async def test_everything_else_is_refused(proxy: Path, targets: tuple[int, int]) -> None:
    allowed, refused = targets
    cases = [
        # Another port of an allowed host, both ways.
        (f"GET http://localhost:{refused}/ HTTP/1.1\r\nHost: localhost:{refused}\r\n\r\n", None, 403),
        (f"CONNECT localhost:{refused} HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", 403),
        (f"CONNECT 127.0.0.1:{allowed} HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", 403),  # not spelled as allowed
        # A Host header that disagrees with the URL.
        (f"GET http://localhost:{allowed}/ HTTP/1.1\r\nHost: localhost:{refused}\r\n\r\n", None, 403),
        (f"GET http://localhost:{allowed}/ HTTP/1.1\r\nHost: example.com\r\n\r\n", None, 403),
        # Not proxy requests at all.
        ("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", None, 400),
        (f"GET https://localhost:{allowed}/ HTTP/1.1\r\n\r\n", None, 400),
        ("CONNECT localhost HTTP/1.1\r\n\r\n", "", 400),
        ("garbage\r\n\r\n", None, 400),
    ]
    for head, then, status in cases:
        reply, tunnelled = await exchange(proxy, head, then)
        assert reply.startswith(f"HTTP/1.1 {status} "), (head, reply)
        assert "hello from" not in reply + tunnelled


async def test_a_name_cannot_be_pointed_at_the_host(proxy: Path, targets: tuple[int, int]) -> None:
    """The machine's own name is allowlisted but resolves to loopback: only a literal entry may reach it."""
    allowed, _ = targets
    name = socket.gethostname()
    try:
        address = ipaddress.ip_address(socket.gethostbyname(name))
    except OSError:
        pytest.skip(f"{name} does not resolve here")
    if address.is_global:
        pytest.skip(f"{name} resolves to a public address here")
    reply, _ = await exchange(proxy, f"GET http://{name}:{allowed}/ HTTP/1.1\r\nHost: {name}:{allowed}\r\n\r\n")
    assert reply.startswith("HTTP/1.1 403 ") and "non-public" in reply
