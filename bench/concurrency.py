"""Concurrent sessions: N sessions each sending M messages at once, N ramped up to what the machine holds.

    python -m bench.concurrency [--quick] [--runs 10]

For each level N (5, 10, 25, 50; fewer when the machine's free memory would not hold them): N sessions (cold
creates, kept from one level to the next), then N clients, one per session, each sending M messages back to back
(the fake model answers at once). Per level: throughput (turns/s), turn and first-event latency percentiles,
errors, and the memory of the sandboxes (the process trees with their ASH_SANDBOX_ID: RSS summed, and PSS, which
splits shared pages), idle (every CLI connected, nothing running) and active (sampled during the load). The
degradation point is the first level whose throughput grows by less than 10% over the previous one: past it the
machine is saturated and latency grows with N.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    mem_available_mib,
    ms,
    pids_with_env,
    print_table,
    quiesce,
    sandbox_memory_mib,
    summary,
    text,
    write_result,
)

# A generous guess of one idle sandbox's memory (the CLI takes ~220 MiB), to keep the ramp inside free memory.
SANDBOX_MIB_GUESS = 350
PAGE_KIB = 4


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def create_sessions(url: str, token: str, count: int) -> list[dict[str, Any]]:
    def one(_: int) -> dict[str, Any]:
        with RawClient(url, token) as client:
            session: dict[str, Any] = client.ok("POST", "/api/sessions", {"agent": "busy"}).json()["session"]
            return session

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def load(url: str, token: str, sessions: list[dict[str, Any]], messages: int) -> dict[str, Any]:
    """Every session's client sends `messages` messages back to back, all at once."""
    turns: list[float] = []
    firsts: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(sessions) + 1)

    def client(session: dict[str, Any]) -> None:
        with RawClient(url, token) as raw:
            raw.ok("GET", "/health")  # connected before the start
            start.wait()
            for m in range(messages):
                try:
                    response = raw.message(session["id"], f"load {m}")
                except Exception as exc:  # counted, not raised: the point is how many fail
                    with lock:
                        errors.append(str(exc)[:300])
                    raw.close()
                    continue
                first = response.first("message")
                with lock:
                    turns.append(ms((response.first("done") or response.end_ns) - response.sent_ns))
                    if first is not None:
                        firsts.append(ms(first - response.sent_ns))

    threads = [threading.Thread(target=client, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    pids = [pid for s in sessions for pid in pids_with_env("ASH_SANDBOX_ID", s["sandboxId"])]
    peak_rss = 0.0
    peak_pss: dict[str, float] = {}
    start.wait()
    began = time.monotonic()
    last_pss = 0.0
    while any(t.is_alive() for t in threads):
        peak_rss = max(peak_rss, rss_mib(pids))
        if time.monotonic() - last_pss > 5:
            last_pss = time.monotonic()
            sample = sandbox_memory_mib([s["sandboxId"] for s in sessions])
            if sample["pss_mib"] > peak_pss.get("pss_mib", 0):
                peak_pss = sample
        time.sleep(0.5)
    wall = time.monotonic() - began
    for thread in threads:
        thread.join()
    return {
        "wall_s": round(wall, 2),
        "turns": len(turns),
        "errors": len(errors),
        "error_samples": errors[:5],
        "throughput_turns_per_s": round(len(turns) / wall, 2),
        "turn_ms": summary(turns),
        "first_event_ms": summary(firsts),
        "active_rss_mib_per_sandbox": round(peak_rss / len(sessions), 1),
        "active_pss_mib_per_sandbox": round(peak_pss.get("pss_mib", 0) / len(sessions), 1),
    }


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    messages = runs or (3 if quick else 10)
    wanted = [2, 4] if quick else [5, 10, 25, 50]
    room = max(2, (mem_available_mib() - 2048) // SANDBOX_MIB_GUESS)
    levels = [n for n in wanted if n <= room] or [min(wanted[0], room)]
    results: list[dict[str, Any]] = []
    with FakeAnthropic(text("pong")) as fake:
        env = {"ASH_MAX_SANDBOXES": str(max(levels) + 5)}
        with ash_server(fake, env) as (server, client):
            info = health(client)
            deploy(client, "busy")
            sessions: list[dict[str, Any]] = []
            assert server.process is not None
            for level in levels:
                started = time.monotonic()
                sessions += create_sessions(server.url, server.api_key, level - len(sessions))
                created_s = time.monotonic() - started
                quiesce(3)  # the new CLIs finish starting up
                idle = sandbox_memory_mib([s["sandboxId"] for s in sessions])
                outcome = load(server.url, server.api_key, sessions, messages)
                server_rss = rss_mib([server.process.pid])
                results.append(
                    {
                        "sessions": level,
                        "messages_each": messages,
                        "create_s": round(created_s, 1),
                        "idle_rss_mib_per_sandbox": round(idle["rss_mib"] / level, 1),
                        "idle_pss_mib_per_sandbox": round(idle["pss_mib"] / level, 1),
                        "processes_per_sandbox": round(idle["processes"] / level, 1),
                        "server_rss_mib": round(server_rss, 1),
                        "load_average": load_average(),
                        **outcome,
                    }
                )
                print(
                    f"N={level}: {outcome['throughput_turns_per_s']} turns/s, turn p50 "
                    f"{outcome['turn_ms'].get('p50')} ms, errors {outcome['errors']}",
                    flush=True,
                )
    degradation = None
    for previous, current in itertools.pairwise(results):
        if current["errors"] or current["throughput_turns_per_s"] < 1.1 * previous["throughput_turns_per_s"]:
            degradation = current["sessions"]
            break
    return {
        "machine": machine(info["isolation"], info["limits"]),
        "levels_wanted": wanted,
        "levels_run": levels,
        "levels": results,
        "saturated_at_sessions": degradation,
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 10)
    result = run(args.quick, args.runs)
    rows = []
    for level in result["levels"]:
        rows.append((f"N={level['sessions']} turn", level["turn_ms"]))
        rows.append((f"N={level['sessions']} first event", level["first_event_ms"]))
    print_table("Concurrent sessions (fake model)", rows)
    for level in result["levels"]:
        print(
            f"N={level['sessions']:3d}: {level['throughput_turns_per_s']:7.2f} turns/s, errors {level['errors']}, "
            f"idle {level['idle_pss_mib_per_sandbox']} MiB PSS / {level['idle_rss_mib_per_sandbox']} MiB RSS per "
            f"sandbox, active {level['active_pss_mib_per_sandbox']} MiB PSS / {level['active_rss_mib_per_sandbox']} "
            "MiB RSS per sandbox"
        )
    print("saturated at N =", result["saturated_at_sessions"])
    print("wrote", write_result("concurrency", result, quick=args.quick))


if __name__ == "__main__":
    main()
