"""The cost of the runner hop: the same turns through a standalone server and through a coordinator + runner.

    .venv/bin/python -m bench.runner_hop [--quick]

Both deployments use the same throwaway PostgreSQL (coordinator mode needs it; the standalone server uses it too, so
only the hop differs), the fake model answering instantly, and a session whose sandbox is warm. Measured from the
client over keep-alive HTTP: time to the first SDK event of a turn (the first `event: message`), and the whole turn
(to `event: done`). The coordinator and the runner run on this host and talk over loopback: the figure is Ash's own
cost of the hop (one signed HTTP request and a relayed stream), without network latency. Writes
docs/benchmarks/runner_hop.json.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.postgres import PostgresCluster
from tests.support.server import REPO, AshServer, free_port

from bench.common import machine, print_table, summary, write_result

PROMPT = "measure the hop"
WARMUP = 5


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


def run(quick: bool = False) -> dict[str, Any]:
    count = 20 if quick else 200
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
        for i in range(count + WARMUP):
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
        "machine": machine(),
        "turns": count,
        "standalone": {"first_event_ms": summary(direct.first), "turn_ms": summary(direct.whole)},
        "coordinator_runner": {"first_event_ms": summary(hop.first), "turn_ms": summary(hop.whole)},
        "hop_overhead_ms": {
            "first_event_ms": paired(hop.first, direct.first),
            "turn_ms": paired(hop.whole, direct.whole),
        },
    }
    print_table(
        f"Runner hop ({count} interleaved turns; coordinator and runner on loopback, PostgreSQL)",
        [
            ("standalone: first event", result["standalone"]["first_event_ms"]),
            ("standalone: whole turn", result["standalone"]["turn_ms"]),
            ("coordinator + runner: first event", result["coordinator_runner"]["first_event_ms"]),
            ("coordinator + runner: whole turn", result["coordinator_runner"]["turn_ms"]),
            ("hop cost, paired: first event", result["hop_overhead_ms"]["first_event_ms"]),
            ("hop cost, paired: whole turn", result["hop_overhead_ms"]["turn_ms"]),
        ],
    )
    return result


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="The cost of the runner hop against standalone mode.")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (results go to *.quick.json)")
    args = parser.parse_args()
    print("wrote", write_result("runner_hop", run(args.quick), quick=args.quick))


if __name__ == "__main__":
    main()
