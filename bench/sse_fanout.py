"""SSE fan-out: many concurrent streams of one session with slow readers; the server's memory stays bounded.

    python -m bench.sse_fanout [--quick] [--runs 200]

One session; K followers (`GET /api/sessions/{id}/stream?follow=true&includePartialMessages=true`, the way
`ash session tail` follows a session) on raw sockets with a 4 KiB receive buffer, each reading 1 KiB every
100 ms (~10 KiB/s: far slower than the turn produces). Then the session's sender runs a long turn (the fake model
streams C text deltas: two SSE frames each) and reads it at full speed. Measured, for K = 0 and K = `--runs`
followers and two turn lengths: the server's RSS (sampled every 50 ms) before, with the followers attached, at its
peak during the turn, and after; the sender's turn time (slow followers must not hold the turn back); and how far
behind the followers were when the turn ended. Bounded means: the peak grows with K by a small constant per stream,
and not with the turn's length (turn.py keeps a 2,048-frame window; a follower behind it reads the store 64 frames
at a time).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    FakeAnthropic,
    RawClient,
    arguments,
    ash_server,
    deploy,
    health,
    load_average,
    machine,
    ms,
    print_table,
    quiesce,
    summary,
    text,
    write_result,
)

PAGE_KIB = 4
READ_BYTES = 1024
READ_EVERY_S = 0.1


def rss_mib(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB / 1024
    except (OSError, ValueError, IndexError):
        return 0.0


class Follower(threading.Thread):
    """A slow SSE reader: a small receive buffer, a little read now and then, so the server's writes block."""

    def __init__(self, host: str, port: int, token: str, session_id: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.received = 0
        self._stop_reading = stop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, port))
        path = f"/api/sessions/{session_id}/stream?follow=true&includePartialMessages=true"
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )

    def run(self) -> None:
        try:
            while not self._stop_reading.is_set():
                data = self.sock.recv(READ_BYTES)
                if not data:
                    return
                self.received += len(data)
                time.sleep(READ_EVERY_S)
        except OSError:
            return
        finally:
            self.sock.close()


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.05)


def one_turn(server: Any, client: RawClient, sid: str, followers: int, chunks: int) -> dict[str, Any]:
    pid = server.process.pid
    quiesce(1)
    before = rss_mib(pid)
    stop = threading.Event()
    host, port = client.host, client.port
    readers = [Follower(host, port, server.api_key, sid, stop) for _ in range(followers)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 30
    while health(client)["openStreams"] < followers and time.monotonic() < deadline:
        time.sleep(0.05)
    attached = health(client)["openStreams"]
    quiesce(1)
    with_followers = rss_mib(pid)
    sampler = Sampler(pid)
    sampler.start()
    response = client.message(sid, f"fan out {chunks}")
    sampler.running = False
    sampler.join()
    frames = sum(1 for _ in response.events)
    turn_bytes = sum(len(data) for _, _, data in response.events)
    behind = [reader.received for reader in readers]
    quiesce(1)
    after = rss_mib(pid)
    stop.set()
    for reader in readers:
        reader.sock.close()
    return {
        "followers": followers,
        "followers_attached": attached,
        "chunks": chunks,
        "frames": frames,
        "turn_payload_kib": round(turn_bytes / 1024, 1),
        "sender_turn_ms": round(ms(response.end_ns - response.sent_ns), 1),
        "server_rss_mib": {
            "before": round(before, 1),
            "followers_attached": round(with_followers, 1),
            "peak_during_turn": round(max(sampler.peak, with_followers), 1),
            "after": round(after, 1),
        },
        "peak_growth_mib": round(max(sampler.peak, with_followers) - before, 1),
        "per_follower_kib": round((max(sampler.peak, with_followers) - before) * 1024 / followers, 1)
        if followers
        else None,
        "follower_kib_received_at_turn_end": summary([b / 1024 for b in behind], 1) if behind else {"n": 0},
    }


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    followers = runs or (10 if quick else 200)
    sizes = (200, 800) if quick else (1000, 4000)
    results = []
    with FakeAnthropic() as fake:
        for chunks in sizes:
            fake.on(f"fan out {chunks}", text("x" * (chunks * 8), chunks=chunks))
        with ash_server(fake) as (server, client):
            info = health(client)
            deploy(client, "fanout")
            sid = client.ok("POST", "/api/sessions", {"agent": "fanout"}).json()["session"]["id"]
            client.message(sid, "warm up")
            for chunks in sizes:
                for count in (0, followers):
                    outcome = one_turn(server, client, sid, count, chunks)
                    results.append(outcome)
                    print(
                        f"K={count:4d} chunks={chunks:5d}: turn {outcome['sender_turn_ms']} ms, server RSS "
                        f"{outcome['server_rss_mib']}",
                        flush=True,
                    )
    return {
        "machine": machine(info["isolation"], info["limits"]),
        "reader": {"read_bytes": READ_BYTES, "every_s": READ_EVERY_S, "rcvbuf_bytes": 4096},
        "load_average_after": load_average(),
        "turns": results,
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 200)
    result = run(args.quick, args.runs)
    rows = [
        (f"K={t['followers']} C={t['chunks']} sender turn", summary([t["sender_turn_ms"]])) for t in result["turns"]
    ]
    print_table("SSE fan-out (fake model)", rows)
    for t in result["turns"]:
        print(
            f"K={t['followers']:4d} C={t['chunks']:5d} frames={t['frames']:6d}: RSS {t['server_rss_mib']} "
            f"growth {t['peak_growth_mib']} MiB, per follower {t['per_follower_kib']} KiB"
        )
    print("wrote", write_result("sse_fanout", result, quick=args.quick))


if __name__ == "__main__":
    main()
