"""A burst of session creates at once, no warm pool: how many succeed, how long each takes, what the server spends.

    python -m bench.burst [--quick] [--runs 50]

First the floors, in the same run: one cold create alone (a sandbox, its bridge and the Claude Code CLI started
inside the request; three times, the median kept) and the direct-SDK floor (bench/sdk_direct.py: a process set up
like the bridge that imports the SDK, connects a ClaudeSDKClient, runs one turn and disconnects, timed whole). Then
N clients (one thread and one keep-alive connection each, released together by a barrier) each create a session.
Sandbox starts are admitted ASH_MAX_CONCURRENT_STARTS at a time (default: one per core, sandbox/admission.py); the
rest wait in a queue that /health shows, sampled during the burst. Target: all N succeed and the slowest create
takes at most N * (one cold create) / cores, i.e. the machine does the same work it would one at a time.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from bench.common import (
    FakeAnthropic,
    RawClient,
    arguments,
    ash_server,
    cpu_seconds,
    deploy,
    health,
    load_average,
    machine,
    mem_available_mib,
    print_table,
    quiesce,
    summary,
    text,
    write_result,
)
from bench.message_overhead import direct_turns

# A generous guess of one idle sandbox's memory, to keep the burst inside free memory.
SANDBOX_MIB_GUESS = 350


def direct_start_ms(fake: FakeAnthropic) -> float:
    """The direct-SDK floor of one session start: the bridge-like process started, the SDK imported and
    connected, one turn, disconnected (bench/sdk_direct.py), timed whole."""
    started = time.monotonic()
    direct_turns(fake, 1, 0)
    return (time.monotonic() - started) * 1000


def cold_create_ms(client: RawClient, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        quiesce(1)
        response = client.ok("POST", "/api/sessions", {"agent": "burst"})
        samples.append(response.elapsed_ms)
        client.ok("DELETE", f"/api/sessions/{response.json()['session']['id']}")
    return samples


def burst(url: str, token: str, count: int) -> dict[str, Any]:
    barrier = threading.Barrier(count)
    outcomes: list[tuple[int, float, str]] = []  # (status, elapsed ms, session id or retry-after)
    lock = threading.Lock()

    def one() -> None:
        with RawClient(url, token) as client:
            client.ok("GET", "/health")  # the connection is open before the barrier
            barrier.wait()
            response = client.request("POST", "/api/sessions", {"agent": "burst"})
            detail = (
                response.json()["session"]["id"] if response.status == 201 else response.headers.get("retry-after", "")
            )
            with lock:
                outcomes.append((response.status, response.elapsed_ms, detail))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"outcomes": outcomes}


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    wanted = runs or (8 if quick else 50)
    room = max(2, (mem_available_mib() - 2048) // SANDBOX_MIB_GUESS)
    count = min(wanted, room)
    cores = os.cpu_count() or 1
    with FakeAnthropic(text("pong")) as fake:
        floor = [direct_start_ms(fake) for _ in range(3)]
        env = {"ASH_MAX_SANDBOXES": str(count + 5)}
        with ash_server(fake, env) as (server, client):
            assert server.process is not None
            info = health(client)
            deploy(client, "burst")
            alone = cold_create_ms(client, 3)
            quiesce(2)
            peaks = {"startsWaiting": 0, "startsInFlight": 0}
            done = threading.Event()

            def sample() -> None:
                with RawClient(server.url, server.api_key) as watcher:
                    while not done.is_set():
                        pool = health(watcher)["pool"]
                        for key in peaks:
                            peaks[key] = max(peaks[key], int(pool.get(key, 0)))
                        time.sleep(0.2)

            watcher = threading.Thread(target=sample)
            watcher.start()
            cpu_before = cpu_seconds([server.process.pid])
            started = time.monotonic()
            outcome = burst(server.url, server.api_key, count)["outcomes"]
            wall_s = time.monotonic() - started
            server_cpu_s = cpu_seconds([server.process.pid]) - cpu_before
            done.set()
            watcher.join()
            created = [o for o in outcome if o[0] == 201]
            for _, _, sid in created:
                client.ok("DELETE", f"/api/sessions/{sid}")
    one_cold = summary(alone)["p50"]
    latencies = summary([o[1] for o in created]) if created else {}
    bound_ms = count * one_cold / cores
    return {
        "machine": machine(info["isolation"], info["limits"]),
        "sessions": count,
        "sessions_wanted": wanted,
        "cores": cores,
        "starts_limit": info["pool"].get("startsLimit"),
        "direct_sdk_floor_ms": summary(floor),
        "cold_create_alone_ms": summary(alone),
        "burst_create_ms": latencies,
        "succeeded": len(created),
        "refused_503": sum(1 for o in outcome if o[0] == 503),
        "other_errors": sorted({o[0] for o in outcome if o[0] not in (201, 503)}),
        "burst_wall_s": round(wall_s, 2),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_ms_per_create": round(server_cpu_s * 1000 / max(1, count), 1),
        "peak_starts_waiting": peaks["startsWaiting"],
        "peak_starts_in_flight": peaks["startsInFlight"],
        "target_p99_ms": round(bound_ms, 1),
        "target_met": len(created) == count and bool(latencies) and latencies["p99"] <= bound_ms,
        "load_average_after": load_average(),
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 50)
    result = run(args.quick, args.runs)
    rows = [(name, value) for name, value in result.items() if isinstance(value, dict) and "n" in value]
    print_table(f"Burst of {result['sessions']} session creates, no warm pool (fake model)", rows)
    for key in ("succeeded", "refused_503", "server_cpu_s", "peak_starts_waiting", "target_p99_ms", "target_met"):
        print(f"{key}: {result[key]}")
    print("wrote", write_result("burst", result, quick=args.quick))


if __name__ == "__main__":
    main()
