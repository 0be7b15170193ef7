"""bubblewrap and gVisor side by side in one run: what choosing a runtime costs (issue 19, item 5).

    python -m bench.runtimes [--quick] [--runs 5]

For each runtime a server of its own (ASH_SANDBOX_RUNTIME), no warm pool, the fake model; per run, a new session:
- **cold create**: `POST /api/sessions` until it answers (the sandbox started and its bridge ready: the sandbox
  start as a client sees it), and **first event**: its first message until the first SDK event;
- **per-message overhead**: five more messages, send to `done` (the fake answers at once: what is left is Ash,
  the bridge, the CLI and the runtime);
- **idle memory**: the sandbox's memory cgroup after the turns (its whole process tree: under gVisor the sentry and
  the gofer too; page cache included);
- **tool-heavy turn**: one turn whose Bash tool writes 1,000 small files in a loop (a system call heavy turn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.anthropic_api import tool_use

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

RUNTIMES = ("bwrap", "gvisor")
MESSAGES = 5
LOOP = "for i in $(seq 1000); do echo $i > f$i; done; echo wrote"


def cgroup_memory_mib(sandbox_id: str) -> float | None:
    """The sandbox's memory cgroup usage (v1 memory.usage_in_bytes or v2 memory.current), or None without one."""
    for pattern, name in (("memory/**", "memory.usage_in_bytes"), ("**", "memory.current")):
        for group in Path("/sys/fs/cgroup").glob(f"{pattern}/{sandbox_id}"):
            path = group / name
            if path.is_file():
                return int(path.read_text()) / (1024 * 1024)
    return None


def turn_ms(client: RawClient, session_id: str, prompt: str) -> tuple[float, float]:
    """(first SDK event, done) of one message, from when it was sent."""
    response = client.message(session_id, prompt)
    first = response.first("message")
    assert first is not None, prompt
    return ms(first - response.sent_ns), ms((response.first("done") or response.end_ns) - response.sent_ns)


def measure(runtime: str, runs: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {
        name: []
        for name in (
            "create_cold_ms",
            "first_event_ms",
            "message_overhead_ms",
            "idle_memory_mib",
            "tool_heavy_turn_ms",
        )
    }
    with FakeAnthropic() as fake:
        fake.on("hello", text("hi"))
        fake.on("write files", [tool_use("Bash", {"command": LOOP}), text("done")])
        env = {"ASH_SANDBOX_RUNTIME": runtime, "ASH_WARM_POOL_SIZE": "0"}
        with ash_server(fake, env) as (_, client):
            info = health(client)
            if info["isolation"] != runtime:
                raise RuntimeError(f"the server runs {info['isolation']}, not {runtime}")
            deploy(client, "bench")
            for _ in range(runs):
                quiesce(0.5)
                response = client.ok("POST", "/api/sessions", {"agent": "bench"})
                results["create_cold_ms"].append(response.elapsed_ms)
                session = response.json()["session"]
                sid = session["id"]
                results["first_event_ms"].append(turn_ms(client, sid, "hello 0")[0])
                for n in range(MESSAGES):
                    results["message_overhead_ms"].append(turn_ms(client, sid, f"hello {n + 1}")[1])
                quiesce(1.0)
                memory = cgroup_memory_mib(session["sandboxId"])
                if memory is not None:
                    results["idle_memory_mib"].append(memory)
                results["tool_heavy_turn_ms"].append(turn_ms(client, sid, "write files")[1])
                client.ok("DELETE", f"/api/sessions/{sid}")
    return {
        "machine": machine(info["isolation"], info["limits"]),
        **{name: summary(values) for name, values in results.items()},
    }


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    runs = runs or (2 if quick else 5)
    return {
        "runs": runs,
        **{runtime: measure(runtime, runs) for runtime in RUNTIMES},
        "load_average_after": load_average(),
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 5)
    result = run(args.quick, args.runs)
    for runtime in RUNTIMES:
        rows = [(name, value) for name, value in result[runtime].items() if isinstance(value, dict) and "n" in value]
        print_table(f"{runtime}: sandbox cost (fake model; memory in MiB)", rows)
    print("wrote", write_result("runtimes", result, quick=args.quick))


if __name__ == "__main__":
    main()
