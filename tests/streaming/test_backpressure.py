"""A sender that stops reading holds its turn back (and so the bridge), until the write timeout drops it."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer
from tests.support.sse import read_all

pytestmark = pytest.mark.slow

# About 10 MB of delta frames alone: far more than the sender's allowed lag (512 frames) plus the kernel's socket
# buffers (up to 4 MB here) and uvicorn's write buffer, so a stalled sender must hold the turn mid-reply.
REPLY = text("".join(f"{i:05d}" + "y" * 1019 for i in range(4000)), chunks=4000)


def stored_frames(client: httpx.Client, sid: str) -> tuple[int, bool]:
    """How far the turn has got: the last stored-or-live frame id, and whether `done` was reached."""
    with client.stream(
        "GET", f"/api/sessions/{sid}/stream", params={"lastEventId": "0", "includePartialMessages": "true"}
    ) as response:
        # A re-attached reader follows the live turn to its end; read only what is already there.
        last, done = 0, False
        for line in response.iter_lines():
            if line.startswith("id: "):
                last = int(line[4:])
            if line == "event: done":
                done = True
                break
            if line == ": keepalive":
                break
        return last, done


def test_stalled_sender_holds_the_turn_until_dropped(model: FakeAnthropic) -> None:
    model.on("hold me back", REPLY)
    env = {"ASH_SSE_WRITE_TIMEOUT_MS": "4000", "ASH_SSE_KEEPALIVE_MS": "300"}
    server = AshServer(model.url, env=env).start()
    try:
        with server.client() as client, contextlib.ExitStack() as stack:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "held", "path": path}).status_code == 201
            sid = client.post("/api/sessions", json={"agent": "held"}).json()["session"]["id"]
            body = json.dumps({"content": "hold me back", "includePartialMessages": True}).encode()
            sender = socket.socket()
            stack.callback(sender.close)
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no window auto-tuning
            sender.connect(("127.0.0.1", server.port))
            sender.sendall(
                f"POST /api/sessions/{sid}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.api_key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            # While the sender reads nothing, the turn stops well short of its end.
            time.sleep(2)
            held_at, done = stored_frames(client, sid)
            assert not done and held_at > 0
            time.sleep(1)
            still_at, done = stored_frames(client, sid)
            assert not done and still_at == held_at  # held: not a frame more while the sender is stalled
            # Once the write timeout drops the sender, the turn runs to its end and is stored.
            deadline = time.monotonic() + 60
            while not done and time.monotonic() < deadline:
                time.sleep(0.5)
                _, done = stored_frames(client, sid)
            assert done
            with client.stream("GET", f"/api/sessions/{sid}/stream") as response:
                frames = read_all(response).frames
            assert frames[-1].event == "done"
            results = [f for f in frames if f.event == "turn_complete"]
            assert results and results[0].data["result"] == REPLY.text
    finally:
        server.cleanup()
