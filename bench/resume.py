"""Warm resume, cold resume from this server's own files, and cold resume from an S3 snapshot (moto), against the
fake model.

    python -m bench.resume [--quick] [--runs 30]

- **warm**: pause → resume while the sandbox lives (its SDK client stays connected): the resume request.
- **cold, local**: stop → resume: a new sandbox on the session's folder, the conversation resumed by the SDK.
- **cold, from S3**: the server stores snapshots in S3 (moto in server mode, ASH_SNAPSHOT_URL=s3://…); after the
  stop the session's local folder is removed, as on a server that never ran it, so resume restores the snapshot.

A cold resume is split with the instrumented bridge (common.PROBE_SOURCE): from the resume request to the bridge
process running its first line (the server's work, bubblewrap, and the interpreter start), then the bridge's
imports (ash_bridge, claude_agent_sdk), to the bridge calling the SDK's `connect()` (the CLI start begins: "before
the SDK starts"), to connected (the bridge reports ready, the resume answers), and, with the next message, to its
first SDK event ("the whole cold resume to first event").
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from bench.common import (
    FakeAnthropic,
    RawClient,
    arguments,
    ash_server,
    deploy,
    health,
    interpreter_start_ms,
    load_average,
    machine,
    ms,
    print_table,
    probe_entry,
    quiesce,
    sandbox_memory_mib,
    sandbox_pids,
    summary,
    text,
    wait_for_notes,
    wait_until,
    write_result,
)


def warm(client: RawClient, sid: str, runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"resume_ms": [], "api_floor_ms": [], "next_message_first_event_ms": []}
    for _ in range(runs):
        client.ok("POST", f"/api/sessions/{sid}/pause")
        quiesce(0.1)
        response = client.ok("POST", f"/api/sessions/{sid}/resume")
        results["resume_ms"].append(response.elapsed_ms)
        # The floor of any request about a session, in the same moment: the HTTP stack, the key check and one
        # read of the session (what a resume costs beyond it is the resume's own).
        results["api_floor_ms"].append(client.ok("GET", f"/api/sessions/{sid}").elapsed_ms)
        message = client.message(sid, "after resume")
        first = message.first("message")
        assert first is not None
        results["next_message_first_event_ms"].append(ms(first - message.sent_ns))
    return results


def cold(client: RawClient, sid: str, runs: int, drop_local: Any = None) -> dict[str, list[float]]:
    """stop → (drop the local copy) → resume → next message, split by the instrumented bridge's notes."""
    names = (
        "resume_ms",
        "to_bridge_process_ms",
        "bridge_imports_ms",
        "to_sdk_connect_ms",
        "sdk_connect_ms",
        "to_first_event_ms",
        "next_message_first_event_ms",
    )
    results: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        client.ok("POST", f"/api/sessions/{sid}/stop")
        if drop_local is not None:
            drop_local()
        quiesce(0.3)
        response = client.ok("POST", f"/api/sessions/{sid}/resume")
        sent = response.sent_ns
        results["resume_ms"].append(response.elapsed_ms)
        notes = wait_for_notes(client, sid, "start", 1)
        if notes:
            note = notes[-1]
            results["to_bridge_process_ms"].append(ms(note["started"] - sent))
            results["bridge_imports_ms"].append(ms(note["imported"] - note["started"]))
            results["to_sdk_connect_ms"].append(ms(note["connect"] - sent))
            results["sdk_connect_ms"].append(ms(note["connected"] - note["connect"]))
        message = client.message(sid, "after resume")
        first = message.first("message")
        assert first is not None
        results["next_message_first_event_ms"].append(ms(first - message.sent_ns))
        # The client sends its message as soon as the resume answers; the probe's log read in between is not Ash's.
        results["to_first_event_ms"].append(response.elapsed_ms + ms(first - message.sent_ns))
    return results


def session_with_history(client: RawClient, agent: str) -> str:
    sid: str = client.ok("POST", "/api/sessions", {"agent": agent}).json()["session"]["id"]
    client.message(sid, "remember this")
    return sid


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    runs = runs or (3 if quick else 30)
    cold_runs = max(2, runs // 2)
    report: dict[str, Any] = {"interpreter_start_ms": interpreter_start_ms(3 if quick else 10)}
    env = {"ASH_BRIDGE_ENTRY": probe_entry()}
    with FakeAnthropic(text("noted")) as fake:
        with ash_server(fake, env) as (_, client):
            info = health(client)
            deploy(client, "resumable")
            sid = session_with_history(client, "resumable")
            report["warm"] = {k: summary(v) for k, v in warm(client, sid, runs).items()}
            report["cold_local"] = {k: summary(v) for k, v in cold(client, sid, cold_runs).items()}
        report["cold_s3"] = s3(fake, env, cold_runs)
        report["idle_memory"] = idle_memory(fake)
    return {
        "machine": machine(info["isolation"], info["limits"]),
        "runs": {"warm": runs, "cold": cold_runs},
        "load_average_after": load_average(),
        **report,
    }


HOT_WINDOW_MS = 2000


def idle_memory(fake: FakeAnthropic) -> dict[str, Any]:
    """An idle session's memory (its sandbox's processes: bridge, CLI, bubblewrap) right after a turn, while it is
    hot, and once its hot window (ASH_HOT_WINDOW_MS, short here) has passed."""
    with ash_server(fake, {"ASH_HOT_WINDOW_MS": str(HOT_WINDOW_MS)}) as (_, client):
        deploy(client, "idle")
        session = client.ok("POST", "/api/sessions", {"agent": "idle"}).json()["session"]
        client.message(session["id"], "remember this")
        quiesce(0.5)
        hot = sandbox_memory_mib([session["sandboxId"]])
        idle_since = time.monotonic()
        # The sweep runs every window / 4 (at least every second): past the window, within one more sweep; the
        # sandbox then stops (its bridge shuts down, then its processes are killed).
        wait_until(lambda: not sandbox_pids(session["sandboxId"]), 30, "the idle sandbox's processes to end")
        stopped_after_ms = round((time.monotonic() - idle_since) * 1000)
        past = sandbox_memory_mib([session["sandboxId"]])
        again = client.message(session["id"], "still there?")  # the conversation goes on, cold
    return {
        "hot_window_ms": HOT_WINDOW_MS,
        "hot": hot,
        "past_hot_window": past,
        "processes_gone_after_ms": stopped_after_ms,
        "next_message_after_window_ms": round(again.elapsed_ms, 1),
    }


def s3(fake: FakeAnthropic, env: dict[str, str], runs: int) -> dict[str, Any]:
    try:
        from tests.support.storage import S3Server
    except ImportError as exc:
        return {"skipped": f"moto is not installed: {exc}"}
    store = S3Server().start()
    try:
        store.bucket("ash-bench")
        s3_env = {**env, **store.env, "ASH_SNAPSHOT_URL": "s3://ash-bench/snapshots"}
        with ash_server(fake, s3_env) as (server, client):
            deploy(client, "resumable")
            sid = session_with_history(client, "resumable")

            def drop_local() -> None:
                for folder in server.data_dir.glob(f"sessions/*/{sid}"):
                    shutil.rmtree(folder)

            return {k: summary(v) for k, v in cold(client, sid, runs, drop_local).items()}
    finally:
        store.stop()


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 30)
    result = run(args.quick, args.runs)
    rows = [("interpreter start (python -I)", result["interpreter_start_ms"])]
    for path in ("warm", "cold_local", "cold_s3"):
        rows += [(f"{path}: {name}", stats) for name, stats in result[path].items() if isinstance(stats, dict)]
    print_table("Resume (fake model)", rows)
    print("wrote", write_result("resume", result, quick=args.quick))


if __name__ == "__main__":
    main()
