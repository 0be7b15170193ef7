"""The cost of the runner hop: the same turns through a standalone server and through a coordinator + runner.

    .venv/bin/python -m bench.runner_hop [--turns 100]

Both deployments use the same throwaway PostgreSQL (coordinator mode needs it; the standalone server uses it too, so
only the hop differs), the fake model answering instantly, and a session whose sandbox is warm. Measured from the
client over keep-alive HTTP: time to the first SDK event of a turn (the first `event: message`), and the whole turn
(to `event: done`). The coordinator and the runner run on this host and talk over loopback: the figure is Ash's own
cost of the hop (one signed HTTP request and a relayed stream), without network latency. Writes
docs/benchmarks/runner_hop.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_api import FakeAnthropic, text  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.server import REPO, AshServer, free_port  # noqa: E402

PROMPT = "measure the hop"
WARMUP = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
    }


class Conversation:
    """A warm session on one deployment, turn after turn."""

    def __init__(self, server: AshServer) -> None:
        self.client = server.client()
        self.client.post("/api/agents", json={"name": "hop", "path": str(REPO / "examples" / "hello-agent")})
        self.sid = self.client.post("/api/sessions", json={"agent": "hop"}).json()["session"]["id"]
        self.first: list[float] = []
        self.whole: list[float] = []

    def turn(self, record: bool) -> None:
        started = time.perf_counter()
        first_at = ended = started
        with self.client.stream("POST", f"/api/sessions/{self.sid}/messages", json={"content": PROMPT}) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if first_at == started and line == "event: message":
                    first_at = time.perf_counter()
                if line == "event: done":
                    ended = time.perf_counter()
            # The stream ends once the turn has finished on the server: the next message may follow.
        if record:
            self.first.append((first_at - started) * 1000)
            self.whole.append((ended - started) * 1000)

    def close(self) -> None:
        self.client.delete(f"/api/sessions/{self.sid}")
        self.client.close()


def paired(hop: list[float], direct: list[float]) -> dict[str, float]:
    """Percentiles of the per-pair differences (turns interleaved, so both saw the same background load)."""
    return summary([h - d for h, d in zip(hop, direct, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "runner_hop.json")
    args = parser.parse_args()
    pg = PostgresCluster.start_new()
    model = FakeAnthropic(text("ok")).start()
    model.on(PROMPT, text("hop measured"))
    servers: list[AshServer] = []
    try:
        standalone = AshServer(model.url, database_url=pg.database()).start()
        servers.append(standalone)
        secret = secrets.token_hex(32)
        database = pg.database()
        common = {"ASH_INTERNAL_SECRET": secret, "ASH_API_KEY": "ash_bench_" + secrets.token_hex(16)}
        coordinator = AshServer(model.url, database_url=database, env={**common, "ASH_MODE": "coordinator"}).start()
        servers.append(coordinator)
        runner_port = free_port()
        runner = AshServer(
            model.url,
            database_url=database,
            port=runner_port,
            env={
                **common,
                "ASH_MODE": "runner",
                "ASH_RUNNER_ID": "bench",
                "ASH_SERVER_URL": coordinator.url,
                "ASH_RUNNER_ADVERTISE_HOST": "127.0.0.1",
                "ASH_RUNNER_PORT": str(runner_port),
            },
        ).start()
        servers.append(runner)
        deadline = time.monotonic() + 30
        while httpx.get(coordinator.url + "/health").json().get("remoteRunners") != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the runner did not register")
            time.sleep(0.1)
        direct, hop = Conversation(standalone), Conversation(coordinator)
        for i in range(args.turns + WARMUP):
            # Interleaved, alternating who goes first: both deployments share the machine's background load.
            for conversation in (direct, hop) if i % 2 else (hop, direct):
                conversation.turn(record=i >= WARMUP)
        direct.close()
        hop.close()
    finally:
        for server in servers:
            server.cleanup()
        model.stop()
        pg.stop()

    result: dict[str, Any] = {
        "benchmark": "runner_hop",
        "machine": {"cpus": platform.machine(), "python": platform.python_version(), "system": platform.platform()},
        "turns": args.turns,
        "standalone": {"first_event_ms": summary(direct.first), "turn_ms": summary(direct.whole)},
        "coordinator_runner": {"first_event_ms": summary(hop.first), "turn_ms": summary(hop.whole)},
        "hop_overhead_ms": {
            "first_event_ms": paired(hop.first, direct.first),
            "turn_ms": paired(hop.whole, direct.whole),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':23}{'p50':>9}{'p95':>9}{'p99':>9}  (ms, {args.turns} turns)")
    for label, key in (("standalone", "standalone"), ("coordinator + runner", "coordinator_runner")):
        for metric in ("first_event_ms", "turn_ms"):
            s = result[key][metric]
            print(f"{label[:12]:12} {metric[:-3]:10}{s['p50']:9.2f}{s['p95']:9.2f}{s['p99']:9.2f}")
    for metric, values in result["hop_overhead_ms"].items():
        print(f"{'hop (paired)':12} {metric[:-3]:10}{values['p50']:9.2f}{values['p95']:9.2f}{values['p99']:9.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
