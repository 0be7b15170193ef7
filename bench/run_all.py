"""Every benchmark, one after the other, then the headline numbers against the targets and the reference system.

    python -m bench [--quick] [--only message_overhead,resume] [--postgres]

Writes each benchmark's docs/benchmarks/<name>.json and docs/benchmarks/summary.json (with --quick: *.quick.json,
so a smoke run never replaces the results docs/benchmarks/README.md discusses).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import RESULTS, load_average, machine, write_result

BENCHMARKS = (
    "pool_ops",
    "message_overhead",
    "session_create",
    "resume",
    "sse_fanout",
    "concurrency",
    "runner_hop",
    "burst",
    "start_stop",
)


@dataclass(frozen=True)
class Headline:
    """One row of issue 16's table: the figure when the issue was filed, the target, and how to read ours."""

    measure: str
    today: str
    target: str
    value: Callable[[dict[str, dict[str, Any]]], Any]
    met: Callable[[Any], bool] | None = None


def dig(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def at(benchmark: str, *path: str) -> Callable[[dict[str, dict[str, Any]]], Any]:
    return lambda results: dig(results.get(benchmark, {}), path)


def at_most(limit: float) -> Callable[[Any], bool]:
    return lambda value: value <= limit


def _fanout(results: dict[str, dict[str, Any]]) -> Any:
    """The sender's turn with 200 followers over without any, for the longest turn measured."""
    turns = results.get("sse_fanout", {}).get("turns", [])
    if not turns:
        return None
    longest = max(t["chunks"] for t in turns)
    alone = next((t["sender_turn_ms"] for t in turns if t["chunks"] == longest and t["followers"] == 0), None)
    crowd = next((t["sender_turn_ms"] for t in turns if t["chunks"] == longest and t["followers"] > 0), None)
    return round(crowd / alone, 2) if alone and crowd else None


def _top_concurrency(results: dict[str, dict[str, Any]]) -> Any:
    levels = results.get("concurrency", {}).get("levels", [])
    top = max(levels, key=lambda level: level["sessions"], default=None)
    if top is None:
        return None
    turn = top["turn_ms"]
    return {"sessions": top["sessions"], "errors": top["errors"], "p99_over_p50": round(turn["p99"] / turn["p50"], 2)}


def _burst(results: dict[str, dict[str, Any]]) -> Any:
    burst = results.get("burst", {})
    if not burst:
        return None
    return {
        "succeeded": f"{burst['succeeded']} of {burst['sessions']}",
        "p99_ms": round(burst["burst_create_ms"]["p99"]),
        "target_p99_ms": round(burst["target_p99_ms"]),
    }


def _sql(results: dict[str, dict[str, Any]]) -> Any:
    per_turn = dig(results.get("message_overhead", {}), ("sql_per_turn",))
    return f"{per_turn['statements']:g} / {per_turn['commits']:g}" if per_turn else None


def _idle_memory(results: dict[str, dict[str, Any]]) -> Any:
    idle = dig(results.get("resume", {}), ("idle_memory",))
    return (
        {"hot_pss_mib": idle["hot"]["pss_mib"], "past_window_pss_mib": idle["past_hot_window"]["pss_mib"]}
        if idle
        else None
    )


HEADLINES: list[Headline] = [
    Headline(
        "added overhead per message, paired, p50 (ms)",
        "28.0",
        "<= 1",
        at("message_overhead", "overhead_per_turn_ms", "p50"),
        at_most(1),
    ),
    Headline(
        "added overhead per message, paired, p99 (ms)",
        "85",
        "<= 3",
        at("message_overhead", "overhead_per_turn_ms", "p99"),
        at_most(3),
    ),
    Headline(
        "server CPU per turn (ms)", "61.6", "<= 4", at("message_overhead", "cpu_per_turn_ms", "ash_server"), at_most(4)
    ),
    Headline("SQL statements / commits per turn", "~20 / 8", "<= 4 / 1 (+1 per 64 frames)", _sql),
    Headline(
        "per-event overhead p50 (ms)",
        "7.8",
        "<= 0.3",
        at("message_overhead", "overhead_per_event_ms", "p50"),
        at_most(0.3),
    ),
    Headline(
        "session create from the warm pool p50 (ms)",
        "14.6",
        "<= 3",
        at("session_create", "create_warm_pool_ms", "p50"),
        at_most(3),
    ),
    Headline(
        "session create, cold, to ready p50 (ms)",
        "2400",
        "<= 700",
        at("session_create", "create_cold_ms", "p50"),
        at_most(700),
    ),
    Headline(
        "first event of a new session's first message, warm pool p50 (ms)",
        "172",
        "<= CLI first query + 5",
        at("session_create", "warm_first_message_first_event_ms", "p50"),
    ),
    Headline("warm resume p50 (ms)", "18.3", "<= 1", at("resume", "warm", "resume_ms", "p50"), at_most(1)),
    Headline(
        "cold resume to the SDK's connect() p50 (ms)",
        "1468",
        "<= 150",
        at("resume", "cold_local", "to_sdk_connect_ms", "p50"),
        at_most(150),
    ),
    Headline(
        "cold resume to first event, local p50 (ms)",
        "2500",
        "<= 800",
        at("resume", "cold_local", "to_first_event_ms", "p50"),
        at_most(800),
    ),
    Headline(
        "cold resume to first event, S3 p50 (ms)",
        "1800",
        "<= 1000",
        at("resume", "cold_s3", "to_first_event_ms", "p50"),
        at_most(1000),
    ),
    Headline(
        "runner hop per turn p50 (ms)",
        "7.8",
        "<= 1.5",
        at("runner_hop", "hop_overhead_ms", "turn_ms", "p50"),
        at_most(1.5),
    ),
    Headline("200 slow followers: sender's turn / alone", "starved (30-100x)", "<= 1.10", _fanout, at_most(1.1)),
    Headline(
        "50 sessions x 10 messages on 2 cores",
        "0 errors",
        "0 errors, p99 <= 2 x p50",
        _top_concurrency,
        lambda v: v["sessions"] >= 50 and v["errors"] == 0 and v["p99_over_p50"] <= 2,
    ),
    Headline(
        "burst: 50 creates at once, no warm pool",
        "0 of 50",
        "50 of 50; p99 <= 50 x cold / cores",
        _burst,
        lambda v: (
            v["succeeded"].split(" of ")[0] == v["succeeded"].split(" of ")[1] and v["p99_ms"] <= v["target_p99_ms"]
        ),
    ),
    Headline(
        "idle session memory, PSS (MiB): hot / past the hot window",
        "~165 / -",
        "<= 180 / <= 15",
        _idle_memory,
        lambda v: v["hot_pss_mib"] <= 180 and v["past_window_pss_mib"] <= 15,
    ),
]


def headlines(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for row in HEADLINES:
        value = row.value(results)
        met = None if value is None or row.met is None else row.met(value)
        ours = round(value, 2) if isinstance(value, float) else value
        rows.append({"measure": row.measure, "today": row.today, "ours": ours, "target": row.target, "met": met})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark (or --only some).")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (results go to *.quick.json)")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--postgres", action="store_true", help="pool_ops on PostgreSQL too")
    parser.add_argument(
        "--summary-only", action="store_true", help="run nothing: the headlines of the results already written"
    )
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b in args.only.split(",")]
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    failed: list[str] = []
    load_before = load_average()
    for name in chosen if args.summary_only else ():
        written = RESULTS / (f"{name}.quick.json" if args.quick else f"{name}.json")
        if written.exists():
            results[name] = json.loads(written.read_text())
    previous = RESULTS / ("summary.quick.json" if args.quick else "summary.json")
    if args.summary_only and previous.exists():  # keep what the last full run said about itself
        before = json.loads(previous.read_text())
        timings, load_before = before.get("seconds", {}), before.get("load_average_before", load_before)
    for name in () if args.summary_only else chosen:
        print(f"\n== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        try:
            if name == "pool_ops" and args.postgres:
                results[name] = module.run(args.quick, postgres=True)
            else:
                results[name] = module.run(args.quick)
        except Exception:  # one broken benchmark must not cost the others' results
            traceback.print_exc()
            failed.append(name)
            continue
        timings[name] = round(time.monotonic() - started, 1)
        print("wrote", write_result(name, results[name], quick=args.quick), f"({timings[name]} s)", flush=True)
    rows = headlines(results)
    summary = {
        "machine": machine(),
        "load_average_before": load_before,
        "seconds": timings,
        "failed": failed,
        "headlines": rows,
    }
    print("wrote", write_result("summary", summary, quick=args.quick))
    print_headlines(rows)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


def print_headlines(rows: list[dict[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in rows:
            print(
                f"{row['measure']:56s} {row['today']:>10} {row['ours']!s:>10} target {row['target']} met {row['met']}"
            )
        return
    table = Table(title="Headlines (issue 16's table: the figure when it was filed, ours now, the target)")
    for column in ("measure", "when filed", "now", "target", "met"):
        table.add_column(column, no_wrap=column == "measure")
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        table.add_row(row["measure"], row["today"], str(row["ours"]), row["target"], met)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
