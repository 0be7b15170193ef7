"""200 concurrent SSE readers on a few fast, long turns, 50 of them not reading at all.

Memory stays bounded (the server's RSS is measured), readers that keep up get every frame through `done` while the
stalled ones are still connected (they do not hold anyone back), stalled ones are dropped after the write timeout,
and every turn completes and is stored.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow

TURNS = 4
FAST_READERS = 150
STALLED_READERS = 50
# 1,500 deltas of 1 KiB each: with partial messages a reader gets about 6 MB per turn, more than the kernel buffers
# of a stalled connection hold, so stalled readers really back up into the server.
REPLY = text("".join(f"{i:05d}" + "x" * 1019 for i in range(1500)), chunks=1500)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def request(server: AshServer, method: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_to_done(server: AshServer, path: str, method: str = "GET", body: bytes = b"") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    received = 0
    tail = b""
    try:
        writer.write(request(server, method, path, body))
        await writer.drain()
        while True:
            chunk = await reader.read(256 * 1024)
            if not chunk:
                break
            received += len(chunk)
            tail = (tail + chunk)[-4096:]
            if b"event: done" in tail:
                break
    finally:
        writer.close()
        await writer.wait_closed()
    assert b"event: done" in tail, f"stream ended without done after {received} bytes"
    return received


def stalled_reader(server: AshServer, path: str) -> socket.socket:
    sock = socket.socket()
    # Before connect, so the kernel cannot auto-tune the window up: the stream must back up into the server.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(request(server, "GET", path))
    return sock  # and never read


def server_streams(server: AshServer) -> int:
    with server.client() as client:
        return int(client.get("/health").json()["openStreams"])


def dropped_by_server(sock: socket.socket) -> bool:
    """Drain what the kernel buffered; a server that dropped us shows up as EOF without `done`."""
    sock.settimeout(5)
    tail = b""
    try:
        while chunk := sock.recv(1 << 20):
            tail = (tail + chunk)[-4096:]
    except TimeoutError:
        return False
    finally:
        sock.close()
    return b"event: done" not in tail


def test_fanout_with_stalled_readers(model: FakeAnthropic) -> None:
    model.on("stream a lot", REPLY)
    server = AshServer(model.url, env={"ASH_SSE_WRITE_TIMEOUT_MS": "20000"}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "fanout", "path": path}).status_code == 201
            sids = [
                client.post("/api/sessions", json={"agent": "fanout"}).json()["session"]["id"] for _ in range(TURNS)
            ]
        assert server.process is not None
        baseline = rss_mib(server.process.pid)
        peak = baseline

        async def scenario() -> list[socket.socket]:
            nonlocal peak
            body = b'{"content": "stream a lot", "includePartialMessages": true}'
            senders = [
                asyncio.create_task(read_to_done(server, f"/api/sessions/{sid}/messages", "POST", body)) for sid in sids
            ]
            await asyncio.sleep(0.5)  # the turns are running: attach everyone else to them
            stream = "/api/sessions/{}/stream?includePartialMessages=true&lastEventId=0"
            stalled = [stalled_reader(server, stream.format(sids[i % TURNS])) for i in range(STALLED_READERS)]
            opened.extend(stalled)
            fast = [
                asyncio.create_task(read_to_done(server, stream.format(sids[i % TURNS]))) for i in range(FAST_READERS)
            ]
            pending = set(senders + fast)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=0.25)
                peak = max(peak, rss_mib(server.process.pid))  # type: ignore[union-attr]
            sizes = [t.result() for t in senders + fast]
            assert min(sizes) > len(REPLY.text)  # everyone who read got the whole reply (plus framing)
            return stalled

        opened: list[socket.socket] = []  # closed whatever happens, so a failure leaks no sockets
        try:
            stalled = asyncio.run(scenario())
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        with server.client() as client:
            health = client.get("/health").json()
            # Every fast reader finished while the stalled ones were still connected: nobody waited for them.
            assert health["status"] == "ok" and health["openStreams"] == STALLED_READERS
            for sid in sids:
                messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
                events = client.get(f"/api/sessions/{sid}/events").json()["events"]
                assert sum('"type":"result"' in m["content"] for m in messages) == 1, [
                    (e["type"], e["data"][:300]) for e in events[-6:]
                ]
        # Past the write timeout, the server has dropped the readers that never read.
        deadline = time.monotonic() + 60
        while server_streams(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server_streams(server) == 0
        assert all(dropped_by_server(sock) for sock in stalled)
        growth = peak - baseline
        print(f"server RSS: baseline {baseline:.0f} MiB, peak {peak:.0f} MiB, growth {growth:.0f} MiB")
        # Buffering per reader would take 200 readers x ~6 MB = 1.2 GB; the window and the batch size bound it.
        assert growth < 250, f"server memory grew by {growth:.0f} MiB"
    finally:
        server.cleanup()
