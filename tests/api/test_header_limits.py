"""Unauthenticated clients cannot make the server hold memory with headers: too many headers or header bytes get
431, an overlong request target 414, headers that do not arrive in time 408, each on a closed connection; a flood
of header lines from several connections leaves the server's memory where it was (it took 265 MB to 1.87 GB)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    with AshServer(fake_model.url, env={"ASH_HEADER_TIMEOUT_MS": str(HEADER_TIMEOUT_MS)}) as server:
        yield server


def connect(server: AshServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Read until the server closes: (status, headers, JSON body)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def send_headers_then_read(server: AshServer, headers: bytes, target: bytes = b"/api/agents") -> tuple[int, str]:
    with connect(server) as sock:
        # The server may answer and stop reading while we are still sending: its answer is in our buffer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        status, response_headers, body = answer(sock)
    assert response_headers.get("connection") == "close"
    assert body["statusCode"] == status
    return status, str(body["error"])


def test_too_many_headers_are_431(server: AshServer) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    assert send_headers_then_read(server, many) == (431, "more than 100 request headers")


def test_too_many_header_bytes_are_431(server: AshServer) -> None:
    status, error = send_headers_then_read(server, b"X-Big: " + b"a" * 1_000_000 + b"\r\n")
    assert status == 431 and "32768 bytes" in error


def test_an_overlong_request_target_is_414(server: AshServer) -> None:
    status, error = send_headers_then_read(server, b"", target=b"/api/agents?q=" + b"a" * 20_000)
    assert status == 414 and "16384 bytes" in error


def test_ordinary_requests_with_many_ordinary_headers_still_work(server: AshServer) -> None:
    headers = b"".join(b"X-Trace-%d: %s\r\n" % (i, b"t" * 200) for i in range(60))
    auth = f"Authorization: Bearer {server.api_key}\r\nConnection: close\r\n".encode()
    with connect(server) as sock:
        sock.sendall(b"GET /api/agents HTTP/1.1\r\nHost: x\r\n" + auth + headers + b"\r\n")
        status, _, body = answer(sock)
    assert status == 200 and "agents" in body


def test_headers_that_do_not_arrive_in_time_are_408(server: AshServer) -> None:
    """A header line every 0.2 s would hold a connection for ever; the deadline closes it."""
    with connect(server) as sock:
        sock.sendall(b"GET /api/agents HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            while sent < 300:  # 60 s of trickling: the server must close long before
                sock.sendall(b"X-Slow-%d: v\r\n" % sent)
                sent += 1
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = answer(sock)
    assert status == 408 and "did not arrive" in str(body["error"])
    assert sent < 300
    with connect(server) as idle:  # a connection that never sends anything is closed as well
        assert answer(idle)[0] == 408


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_header_flood_leaves_memory_where_it_was(server: AshServer) -> None:
    assert server.process is not None
    before = rss_kib(server.process.pid)
    stop = time.monotonic() + 6
    line = b"X-Flood: " + b"f" * 100 + b"\r\n"

    def flood() -> None:
        while time.monotonic() < stop:
            with connect(server) as sock:
                try:
                    sock.sendall(b"GET /api/agents HTTP/1.1\r\nHost: x\r\n")
                    while time.monotonic() < stop:
                        sock.sendall(line * 1000)
                except (BrokenPipeError, ConnectionResetError):
                    continue

    floods = [threading.Thread(target=flood) for _ in range(4)]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join()
    grown_mib = (rss_kib(server.process.pid) - before) / 1024
    assert grown_mib < 64, f"the server grew by {grown_mib:.0f} MiB under the header flood"
    with server.client() as client:
        assert client.get("/health").status_code == 200
