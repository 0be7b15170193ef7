"""Session create and warm-message latency against the fake model (answers instantly): Ash + the SDK, no LLM.

    .venv/bin/python bench/session_latency.py [--runs 20]

Prints p50/p95/p99 and writes docs/benchmarks/session_latency.json. Measured from the client side with a
keep-alive httpx client, so the numbers include HTTP; the server runs as it does in production (uvicorn+uvloop).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with FakeAnthropic() as fake:
        fake.on("ping", text("pong"))
        server = AshServer(fake.url).start()
        try:
            client = server.client()
            path = str(REPO / "examples" / "hello-agent")
            client.post("/api/agents", json={"name": "bench", "path": path}).raise_for_status()
            create_ms: list[float] = []
            first_turn_ms: list[float] = []
            warm_ms: list[float] = []
            warm_first_byte_ms: list[float] = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                response = client.post("/api/sessions", json={"agent": "bench"})
                response.raise_for_status()
                create_ms.append((time.perf_counter() - t0) * 1000)
                sid = response.json()["session"]["id"]
                for attempt in range(2):
                    t0 = time.perf_counter()
                    first: float | None = None
                    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "ping"}) as r:
                        for chunk in r.iter_bytes():
                            if first is None and b"event: message" in chunk:
                                first = (time.perf_counter() - t0) * 1000
                    total = (time.perf_counter() - t0) * 1000
                    if attempt == 0:
                        first_turn_ms.append(total)
                    else:
                        warm_ms.append(total)
                        warm_first_byte_ms.append(first or total)
                client.delete(f"/api/sessions/{sid}").raise_for_status()
        finally:
            server.cleanup()
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()},
        "session_create_ms": summary(create_ms),
        "first_message_turn_ms": summary(first_turn_ms),
        "warm_message_turn_ms": summary(warm_ms),
        "warm_message_first_sdk_message_ms": summary(warm_first_byte_ms),
    }
    out = ROOT / "docs" / "benchmarks" / "session_latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, stats in result.items():
        if name != "machine":
            print(
                f"{name:36s} p50 {stats['p50']:8.1f}  p95 {stats['p95']:8.1f}  p99 {stats['p99']:8.1f} (n={stats['n']})"
            )
    print(f"wrote {out}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
