"""The egress proxy: the host side of `egress.sock`, the only way out of a sandbox whose agent allows some domains.

Inside the sandbox the bridge exposes the socket as `HTTP(S)_PROXY=http://127.0.0.1:<port>` on the sandbox's own
loopback. Here each connection is one proxy request:

- `CONNECT host:port` (HTTPS and anything else tunnelled): the target must be in the allowlist;
- an absolute-form `GET http://host[:port]/...` (plain HTTP): the URL's host must be in the allowlist and the
  `Host` header, if any, must name the same host, so a request cannot claim one name and be routed as another.

Everything else is answered 403 (not allowed) or 400 (not a proxy request) and the connection closed. The proxy
resolves names itself and connects to the address it checked (see network.py for which addresses a name may
resolve to). It never looks inside a tunnel: an allowlisted host is trusted with whatever goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from .network import AllowEntry, NetworkPolicy, may_reach, normalize_host
from .sockets import SandboxSockets

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
CONNECT_TIMEOUT = 10.0
COPY_SIZE = 64 * 1024
DROPPED_HEADERS = frozenset({b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"})


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EgressProxy:
    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self._connect_timeout = connect_timeout
        self._sockets = SandboxSockets()

    async def open(self, sandbox_id: str, policy: NetworkPolicy, path: Path, owner: tuple[int, int] | None) -> None:
        await self._sockets.open(
            sandbox_id, partial(self._serve, sandbox_id, policy), path, owner, limit=MAX_HEAD_BYTES
        )

    async def close(self, sandbox_id: str) -> None:
        await self._sockets.close(sandbox_id)

    async def aclose(self) -> None:
        for sandbox_id in self._sockets.sandbox_ids():
            await self.close(sandbox_id)

    async def _serve(
        self, sandbox_id: str, policy: NetworkPolicy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with self._sockets.connection(sandbox_id) as tracked:
            if tracked:
                await self._proxy(sandbox_id, policy, reader, writer)
            else:
                writer.close()

    async def _proxy(
        self, sandbox_id: str, policy: NetworkPolicy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            try:
                up_reader, upstream, first = await self._open(policy, head)
            except Refused as refusal:
                log.info("egress of sandbox %s refused: %s", sandbox_id, refusal.message)
                await _answer(writer, refusal.status, refusal.message)
                return
            if first is None:
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                upstream.write(first)
            await _pipe(reader, writer, up_reader, upstream)
        except (ConnectionError, OSError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()

    async def _open(
        self, policy: NetworkPolicy, head: bytes
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes | None]:
        """Connect to what the request asks for, if allowed. Returns the bytes to send first (None for CONNECT)."""
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ")
        except ValueError:
            raise Refused(400, "not an HTTP proxy request") from None
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise Refused(400, "malformed header line")
            headers.append((name.strip().lower(), value.strip()))
        if method == b"CONNECT":
            host, port = _authority(target.decode("latin-1"))
            reader, writer = await self._dial(policy, host, port)
            return reader, writer, None
        url = urlsplit(target.decode("latin-1"))
        if url.scheme != "http" or not url.hostname:
            raise Refused(400, "send CONNECT host:port, or an absolute http:// URL")
        try:
            port = url.port or 80
        except ValueError:
            raise Refused(400, "invalid port") from None
        for name, value in headers:
            if name == b"host":
                claimed, claimed_port = _authority(value.decode("latin-1"), default_port=port)
                if normalize_host(claimed) != normalize_host(url.hostname) or claimed_port != port:
                    raise Refused(403, f"Host header {claimed!r} does not match the request's URL")
        reader, writer = await self._dial(policy, url.hostname, port)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = [(n, v) for n, v in headers if n not in DROPPED_HEADERS]
        if not any(n == b"host" for n, _ in kept):
            kept.append((b"host", url.netloc.encode("latin-1")))
        # One request per connection: a second request on it could not be checked.
        kept.append((b"connection", b"close"))
        request = b" ".join((method, path.encode("latin-1"), version)) + b"\r\n"
        request += b"".join(n + b": " + v + b"\r\n" for n, v in kept) + b"\r\n"
        return reader, writer, request

    async def _dial(
        self, policy: NetworkPolicy, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        entry = policy.entry_for(host, port)
        if entry is None:
            raise Refused(403, f"{host}:{port} is not in this agent's network allowlist")
        for address in await self._addresses(host, port, entry):
            try:
                async with asyncio.timeout(self._connect_timeout):
                    return await asyncio.open_connection(address, port, limit=COPY_SIZE)
            except (OSError, TimeoutError):
                continue
        raise Refused(502, f"could not connect to {host}:{port}")

    async def _addresses(self, host: str, port: int, entry: AllowEntry) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(502, f"cannot resolve {host}: {exc}") from None
        allowed: list[str] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            if may_reach(entry, ipaddress.ip_address(address)) and address not in allowed:
                allowed.append(address)
        if not allowed:
            raise Refused(403, f"{host} resolves to a non-public address; allowlist it as an IP literal to reach it")
        return allowed


def _authority(raw: str, *, default_port: int | None = None) -> tuple[str, int]:
    """host and port of `host:port` / `[v6]:port` (the port may be left out only where a default exists)."""
    raw = raw.strip()
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = raw.rpartition(":") if ":" in raw else (raw, "", "")
    if not port_text:
        if default_port is None:
            raise Refused(400, f"{raw!r} has no port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise Refused(400, f"invalid port in {raw!r}")
    return host, int(port_text)


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}.get(status, "Error")
    body = f"ash egress proxy: {message}\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(COPY_SIZE):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, OSError):
            sink.close()

    await asyncio.gather(copy(client_reader, upstream_writer), copy(upstream_reader, client_writer))
