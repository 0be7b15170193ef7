"""Session latency against the fake model (answers instantly): Ash + the SDK, no LLM.

    .venv/bin/python bench/session_latency.py [--runs 20]

Measures, per run: session create served from the warm pool and cold (a sandbox start), the first and a warm
message, warm resume (pause → resume, sandbox alive) and cold resume (stop → resume: a new sandbox on the session's
folder, conversation resumed). Prints p50/p95/p99 and writes docs/benchmarks/session_latency.json. Measured from the
client side with a keep-alive httpx client (about 1.5 ms of each number is the client); the server runs as in
production (uvicorn + uvloop). Each warm create waits until the pool's replacement is ready, so no measurement
shares the CPU with a sandbox start it did not cause.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_api import FakeAnthropic, text  # noqa: E402
from tests.support.server import REPO, AshServer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def timed(client: httpx.Client, url: str, body: dict[str, Any] | None = None) -> tuple[float, httpx.Response]:
    """A POST, timed."""
    t0 = time.perf_counter()
    response = client.post(url, json=body)
    elapsed = (time.perf_counter() - t0) * 1000
    response.raise_for_status()
    return elapsed, response


def wait_warm(client: httpx.Client) -> None:
    deadline = time.monotonic() + 120
    while client.get("/health").json()["pool"]["warm"] < 1:
        if time.monotonic() > deadline:
            raise SystemExit("the warm pool did not fill within 120 s")
        time.sleep(0.02)


def message(client: httpx.Client, sid: str) -> tuple[float, float]:
    """(whole turn, first SDK message) in ms."""
    t0 = time.perf_counter()
    first: float | None = None
    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "ping"}) as r:
        for chunk in r.iter_bytes():
            if first is None and b"event: message" in chunk:
                first = (time.perf_counter() - t0) * 1000
    total = (time.perf_counter() - t0) * 1000
    return total, first or total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, list[float]] = {
        name: []
        for name in (
            "session_create_warm_pool_ms",
            "session_create_cold_ms",
            "first_message_turn_ms",
            "warm_message_turn_ms",
            "warm_message_first_sdk_message_ms",
            "resume_warm_ms",
            "resume_cold_ms",
        )
    }
    with FakeAnthropic() as fake:
        fake.on("ping", text("pong"))
        server = AshServer(fake.url).start()
        try:
            client = server.client()
            path = str(REPO / "examples" / "hello-agent")
            for name, size in (("bench", 1), ("bench-cold", 0)):
                client.post("/api/agents", json={"name": name, "path": path}).raise_for_status()
                client.patch(f"/api/agents/{name}/config", json={"warmPoolSize": size}).raise_for_status()
            for _ in range(args.runs):
                wait_warm(client)
                hits = client.get("/health").json()["pool"]["preWarmHits"]
                elapsed, response = timed(client, "/api/sessions", {"agent": "bench"})
                assert client.get("/health").json()["pool"]["preWarmHits"] == hits + 1, "not served warm"
                results["session_create_warm_pool_ms"].append(elapsed)
                sid = response.json()["session"]["id"]
                wait_warm(client)
                results["first_message_turn_ms"].append(message(client, sid)[0])
                total, first = message(client, sid)
                results["warm_message_turn_ms"].append(total)
                results["warm_message_first_sdk_message_ms"].append(first)
                client.post(f"/api/sessions/{sid}/pause").raise_for_status()
                results["resume_warm_ms"].append(timed(client, f"/api/sessions/{sid}/resume")[0])
                client.post(f"/api/sessions/{sid}/stop").raise_for_status()
                results["resume_cold_ms"].append(timed(client, f"/api/sessions/{sid}/resume")[0])
                client.delete(f"/api/sessions/{sid}").raise_for_status()
                elapsed, response = timed(client, "/api/sessions", {"agent": "bench-cold"})
                results["session_create_cold_ms"].append(elapsed)
                client.delete(f"/api/sessions/{response.json()['session']['id']}").raise_for_status()
        finally:
            server.cleanup()
    report: dict[str, object] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        **{name: summary(values) for name, values in results.items()},
    }
    out = ROOT / "docs" / "benchmarks" / "session_latency.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, values in results.items():
        stats = summary(values)
        print(f"{name:36s} p50 {stats['p50']:8.1f}  p95 {stats['p95']:8.1f}  p99 {stats['p99']:8.1f} (n={stats['n']})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
