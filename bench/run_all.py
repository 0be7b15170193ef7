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
)

# (headline, benchmark, path to the number, target, reference system). Targets are "at most", in ms.
HEADLINES: list[tuple[str, str, tuple[str, ...], float | None, str]] = [
    ("overhead per message p50 (ms)", "message_overhead", ("overhead_per_turn_ms", "p50"), 0.4, "0.41"),
    ("overhead per message p99 (ms)", "message_overhead", ("overhead_per_turn_ms", "p99"), 1.0, "0.54"),
    ("overhead per event p50 (ms)", "message_overhead", ("overhead_per_event_ms", "p50"), None, "-"),
    ("model gateway hop per call p50 (ms)", "message_overhead", ("gateway", "hop_p50_ms"), None, "-"),
    ("session create, warm pool p50 (ms)", "session_create", ("create_warm_pool_ms", "p50"), 10.0, "44 (p95 142)"),
    ("session create, cold p50 (ms)", "session_create", ("create_cold_ms", "p50"), None, "-"),
    (
        "first event of a new session's first message p50 (ms)",
        "session_create",
        ("warm_first_message_first_event_ms", "p50"),
        100.0,
        "~1300 (first token)",
    ),
    ("warm resume p50 (ms)", "resume", ("warm", "resume_ms", "p50"), 1.0, "1.7"),
    ("cold resume before the SDK starts p50 (ms)", "resume", ("cold_local", "to_sdk_connect_ms", "p50"), 30.0, "32"),
    ("cold resume to first event p50 (ms)", "resume", ("cold_local", "to_first_event_ms", "p50"), 800.0, "-"),
    ("cold resume from S3 to first event p50 (ms)", "resume", ("cold_s3", "to_first_event_ms", "p50"), 800.0, "-"),
    ("pool claim at 10k rows p50 (µs)", "pool_ops", ("sqlite", "claim (10k entries)", "p50"), None, "µs"),
    ("runner hop, first event p50 (ms)", "runner_hop", ("hop_overhead_ms", "first_event_ms", "p50"), None, "-"),
    ("runner hop, first event p99 (ms)", "runner_hop", ("hop_overhead_ms", "first_event_ms", "p99"), None, "-"),
    ("runner hop, whole turn p50 (ms)", "runner_hop", ("hop_overhead_ms", "turn_ms", "p50"), None, "-"),
    ("runner hop, whole turn p99 (ms)", "runner_hop", ("hop_overhead_ms", "turn_ms", "p99"), None, "-"),
]


def dig(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def headlines(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, benchmark, path, target, reference in HEADLINES:
        value = dig(results.get(benchmark, {}), path)
        met = None if value is None or target is None else value <= target
        ours = round(value, 2) if isinstance(value, float) else value
        rows.append({"measure": name, "ours": ours, "target": target, "met": met, "reference": reference})
    concurrency = results.get("concurrency", {})
    top = max(concurrency.get("levels", []), key=lambda level: level["sessions"], default=None)
    if top is not None:
        rows.append(
            {
                "measure": f"{top['sessions']} concurrent active sessions: errors",
                "ours": top["errors"],
                "target": "0 errors at 50 sessions",
                "met": top["sessions"] >= 50 and top["errors"] == 0,
                "reference": "-",
            }
        )
    burst = results.get("burst", {})
    if burst:
        rows.append(
            {
                "measure": f"burst of {burst['sessions']} creates, no warm pool: succeeded",
                "ours": burst["succeeded"],
                "target": f"{burst['sessions']} of {burst['sessions']}",
                "met": burst["succeeded"] == burst["sessions"],
                "reference": "-",
            }
        )
        rows.append(
            {
                "measure": "burst create p99 (ms)",
                "ours": round(burst["burst_create_ms"]["p99"], 1),
                "target": burst["target_p99_ms"],
                "met": burst["target_met"],
                "reference": "-",
            }
        )
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
            print(f"{row['measure']:56s} {row['ours']!s:>10} target {row['target']!s:>8} met {row['met']}")
        return
    table = Table(title="Headlines", title_justify="left")
    for column in ("measure", "ours", "target", "met", "reference"):
        table.add_column(column, no_wrap=column == "measure")
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        table.add_row(row["measure"], str(row["ours"]), str(row["target"] or ""), met, row["reference"])
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
