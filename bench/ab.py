"""Two servers side by side: this tree against another source tree (a commit), the same turns interleaved.

    git worktree add /tmp/ash-base <commit>
    python -m bench.ab --base /tmp/ash-base [--runs 300] [--quick]

The machine's speed drifts between runs (a shared VM: the same benchmark differs by 1.7x from one hour to the next),
so a change is measured against its base in one run: two servers on one fake model, one session each, a turn on
one then the other (the order alternating), and the same for two plain requests (`GET /api/sessions/{id}` and a
warm resume, and a create from the warm pool). Reported per server: the time from request to `done`, the
server's CPU per turn and per request, and the per-pair differences (this tree minus the base), whose percentiles
cancel the background load both saw.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    FakeAnthropic,
    RawClient,
    ash_server,
    cpu_seconds,
    database_counts,
    deploy,
    health,
    machine,
    ms,
    print_table,
    quiesce,
    summary,
    text,
    wait_pool_settled,
    write_result,
)

PROMPT = "ab"
SOURCES = ("server", "bridge", "cli")


def base_env(base: Path) -> dict[str, str]:
    """The base tree's packages ahead of this tree's editable install (PYTHONPATH comes before site-packages)."""
    missing = [name for name in SOURCES if not (base / name).is_dir()]
    if missing:
        raise SystemExit(f"{base} is not an Ash source tree (no {', '.join(missing)})")
    return {"PYTHONPATH": ":".join(str(base / name) for name in (*SOURCES, "."))}


class Side:
    def __init__(self, name: str, server: Any, client: RawClient) -> None:
        self.name = name
        self.server = server
        self.client = client
        deploy(client, "ab")
        self.session = client.ok("POST", "/api/sessions", {"agent": "ab"}).json()["session"]["id"]
        self.cpu: dict[str, float] = {}

    @property
    def pid(self) -> int:
        return int(self.server.process.pid)

    def turn(self, n: int) -> float:
        response = self.client.message(self.session, f"{PROMPT} {n}")
        done = response.first("done")
        assert done is not None  # (message() refuses a turn without one)
        return ms(done - response.sent_ns)


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    return summary([x - y for x, y in zip(a, b, strict=True)])


def interleave(
    sides: list[Side],
    count: int,
    work: Callable[[Side, int], float],
    prepare: Callable[[Side], None] | None = None,
) -> dict[str, list[float]]:
    """`work` on each side `count` times, alternating which goes first; each side's CPU over its own calls
    (`prepare`, run before each call, is not counted)."""
    times: dict[str, list[float]] = {side.name: [] for side in sides}
    spent = dict.fromkeys(times, 0.0)
    for n in range(count):
        for side in sides if n % 2 == 0 else sides[::-1]:
            if prepare is not None:
                prepare(side)
            before = cpu_seconds([side.pid])
            times[side.name].append(work(side, n))
            spent[side.name] += cpu_seconds([side.pid]) - before
    for side in sides:
        side.cpu[work.__name__] = round(spent[side.name] * 1000 / count, 3)
    return times


def run(base: Path, runs: int) -> dict[str, Any]:
    with FakeAnthropic() as fake:
        fake.on(PROMPT, text("pong"))
        with contextlib.ExitStack() as stack:
            this_server, this_client = stack.enter_context(ash_server(fake))
            base_server, base_client = stack.enter_context(ash_server(fake, base_env(base)))
            info = health(this_client)
            sides = [Side("this", this_server, this_client), Side("base", base_server, base_client)]
            for side in sides:
                for n in range(10):
                    side.turn(n)
            quiesce()
            counts = {side.name: database_counts(side.client) for side in sides}
            turns = interleave(sides, runs, Side.turn)
            sql = {
                side.name: {
                    name: round((value - counts[side.name][name]) / runs, 2)
                    for name, value in database_counts(side.client).items()
                }
                for side in sides
            }

            def session_read(side: Side, n: int) -> float:
                started = time.perf_counter_ns()
                side.client.ok("GET", f"/api/sessions/{side.session}")
                return ms(time.perf_counter_ns() - started)

            def warm_resume(side: Side, n: int) -> float:
                side.client.ok("POST", f"/api/sessions/{side.session}/pause")
                started = time.perf_counter_ns()
                side.client.ok("POST", f"/api/sessions/{side.session}/resume")
                return ms(time.perf_counter_ns() - started)

            created: list[tuple[Side, str]] = []

            def settle(side: Side) -> None:
                # The last create's session goes, and the pool's replacement sandbox starts and settles, before
                # the timed create (and outside its CPU).
                while created:
                    owner, session_id = created.pop()
                    owner.client.ok("DELETE", f"/api/sessions/{session_id}")
                wait_pool_settled(side.client, 1)
                quiesce(0.3)

            def warm_create(side: Side, n: int) -> float:
                response = side.client.ok("POST", "/api/sessions", {"agent": "abwarm"})
                created.append((side, response.json()["session"]["id"]))
                return float(response.elapsed_ms)

            reads = interleave(sides, runs, session_read)
            resumes = interleave(sides, max(runs // 3, 10), warm_resume)
            for side in sides:
                deploy(side.client, "abwarm", warm_pool=1)
            creates = interleave(sides, max(runs // 10, 10), warm_create, settle)
    report: dict[str, Any] = {"base": str(base), "runs": runs, "sql_per_turn": sql}
    measured = {
        "turn_to_done_ms": turns,
        "session_read_ms": reads,
        "warm_resume_ms": resumes,
        "warm_create_ms": creates,
    }
    for what, times in measured.items():
        report[what] = {name: summary(values) for name, values in times.items()}
        report[what]["this_minus_base"] = paired(times["this"], times["base"])
    report["server_cpu_ms"] = {side.name: side.cpu for side in sides}
    return {"machine": machine(info["isolation"], info["limits"]), **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="another Ash source tree (a git worktree)")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="30 runs (results go to ab.quick.json)")
    args = parser.parse_args()
    result = run(args.base.resolve(), 30 if args.quick else args.runs)
    rows = [
        (f"{what}: {name}", result[what][name])
        for what in ("turn_to_done_ms", "session_read_ms", "warm_resume_ms", "warm_create_ms")
        for name in ("this", "base", "this_minus_base")
    ]
    print_table(f"This tree against {result['base']} ({result['runs']} interleaved runs)", rows)
    print("server CPU per call (ms):", result["server_cpu_ms"])
    print("SQL per turn:", result["sql_per_turn"])
    print("wrote", write_result("ab", result, quick=args.quick))


if __name__ == "__main__":
    main()
