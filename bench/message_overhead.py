"""Ash's overhead per message and per event: the same fake-model turn through the HTTP API + SSE and straight
through a connected ClaudeSDKClient.

    python -m bench.message_overhead [--quick] [--runs 200]

Three measurements:

1. **Direct**: bench/sdk_direct.py drives the bridge's own SdkDriver in a process set up like the bridge, the CLI
   talking to the fake model directly. Time from `query()` to the result message.
2. **Through Ash**: the same turns as `POST /api/sessions/{id}/messages` (raw keep-alive client, SSE read to
   `done`), with an instrumented bridge (common.PROBE_SOURCE) noting when the query reached it and when it handed
   each SDK message to the server. So each turn splits exactly into Ash inbound (request sent → query at the
   bridge), the SDK's own turn inside the sandbox, and Ash outbound (last SDK message at the bridge → `done` at the
   client); and each event's latency through Ash (bridge → server → store → SSE → client) is measured by itself.
   The CLI's turn time varies by tens of ms from turn to turn, so the difference of two unpaired distributions
   (reported too) cannot resolve fractions of a millisecond; the paired split can.
3. **Model gateway hop**: the one part of Ash inside the SDK's turn (the CLI reaches the model through the
   sandbox's `model.sock`): the same Messages API call to the fake model through a live sandbox's socket and
   straight over TCP.

With ASH_DEBUG_TIMING the server also logs, per turn, the time from sending the query to the bridge to the turn's
end (`timing ... total_ms`): compared with the bridge's own view of the turn, that is the server's share.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ash_server.paths import chown_tree
from ash_server.sandbox.environment import sandbox_environment
from ash_server.sandbox.launcher import drop_privileges
from ash_server.settings import Settings
from bench.common import (
    AGENT,
    FakeAnthropic,
    RawClient,
    arguments,
    ash_server,
    cpu_seconds,
    database_counts,
    deploy,
    health,
    load_average,
    machine,
    ms,
    print_table,
    probe_entry,
    quiesce,
    sandbox_pids,
    summary,
    text,
    wait_for_notes,
    write_result,
)

PROMPT = "overhead"
# The server's ASH_DEBUG_TIMING line of a turn (sessions/turns.py): `timing session=... turn=... key=ms ...`.
INBOUND_PARTS = ("client_to_app_ms", "read_ms", "store_ms", "task_start_ms", "query_written_ms", "bridge_wake_ms")
TIMING = re.compile(r"timing session=\S+ turn=(\S+)((?: \w+=[-\d.]+)+)")
PAUSE_S = 0.05


def direct_turns(fake: FakeAnthropic, turns: int, warmup: int) -> dict[str, Any]:
    """The baseline: bench/sdk_direct.py in its own process."""
    root = Path(tempfile.mkdtemp(prefix="ash-bench-direct-"))
    root.chmod(0o755)
    # The sandbox's user, as the server would pick it (the CLI refuses bypassPermissions as root).
    ids = Settings(data_dir=root).sandbox_ids
    try:
        workspace, home = root / "workspace", root / "home"
        shutil.copytree(AGENT, workspace)
        (home / ".claude").mkdir(parents=True)
        chown_tree(workspace, ids)
        chown_tree(home, ids)
        env = sandbox_environment(
            injected={
                "HOME": str(home),
                "CLAUDE_CONFIG_DIR": str(home / ".claude"),
                "ANTHROPIC_BASE_URL": fake.url,
                "ANTHROPIC_API_KEY": "sk-ant-bench-direct",
            },
            user={},
            host={"CLAUDE_CODE_MAX_RETRIES": "0"},
        )
        config = {"bridge": {"cwd": str(workspace)}, "turns": turns, "warmup": warmup, "prompt": PROMPT}
        (root / "config.json").write_text(json.dumps(config))
        script = Path(__file__).with_name("sdk_direct.py")
        out = subprocess.run(
            [*drop_privileges(ids), sys.executable, "-I", str(script), str(root / "config.json")],
            env=env,
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"sdk_direct failed: {out.stderr[:3000]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def repeat(client: RawClient, path: str, times: int) -> None:
    for _ in range(times):
        client.ok("GET", path)


def server_cpu_ms(pid: int, count: int, work: Any) -> float:
    """The server's CPU time per unit of `work` (which does `count` units), in ms."""
    quiesce()
    before = cpu_seconds([pid])
    work()
    return round((cpu_seconds([pid]) - before) * 1000 / count, 2)


def gateway_hop(fake: FakeAnthropic, model_socket: Path, calls: int, *, direct_too: bool = True) -> dict[str, Any]:
    """One streamed Messages API call to the fake model, through the sandbox's model socket and directly, in turn."""
    body = {
        "model": "claude-bench",
        "max_tokens": 16,
        "stream": True,
        "messages": [{"role": "user", "content": "gateway hop"}],
    }
    via_gateway: list[float] = []
    direct: list[float] = []
    with RawClient("http://localhost", unix_socket=model_socket) as hop, RawClient(fake.url) as straight:
        for n in range(calls + 5):
            for client, samples in ((hop, via_gateway), (straight, direct))[: 2 if direct_too else 1]:
                response = client.request("POST", "/v1/messages", body)
                if response.status != 200:
                    raise RuntimeError(f"model call: {response.status} {response.body[:300]!r}")
                if n >= 5:
                    samples.append(response.elapsed_ms)
    gateway, baseline = summary(via_gateway), summary(direct)
    if not direct_too:
        return {"via_gateway_ms": gateway}
    return {
        "via_gateway_ms": gateway,
        "direct_ms": baseline,
        "hop_p50_ms": round(gateway["p50"] - baseline["p50"], 3),
        "hop_p99_ms": round(gateway["p99"] - baseline["p99"], 3),
    }


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    turns = runs or (20 if quick else 200)
    warmup = 3 if quick else 10
    with FakeAnthropic() as fake:
        fake.on(PROMPT, text("pong"))
        started = time.monotonic()
        direct = direct_turns(fake, turns, warmup)
        direct_s = time.monotonic() - started
        env = {"ASH_BRIDGE_ENTRY": probe_entry(), "ASH_DEBUG_TIMING": "1"}
        with ash_server(fake, env) as (server, client):
            info = health(client)
            deploy(client, "overhead")
            session = client.ok("POST", "/api/sessions", {"agent": "overhead"}).json()["session"]
            sid = session["id"]
            responses = []
            assert server.process is not None
            server_pid, in_sandbox = server.process.pid, sandbox_pids(session["sandboxId"])
            cpu: dict[str, float] = {}
            model_calls = 0
            for n in range(warmup + turns):
                if n == warmup:
                    cpu = {"server": cpu_seconds([server_pid]), "sandbox": cpu_seconds(in_sandbox)}
                    model_calls = len(fake.requests)
                    database = database_counts(client)
                response = client.message(sid, f"{PROMPT} {n}")
                if n >= warmup:
                    responses.append(response)
                time.sleep(PAUSE_S)
            cpu = {
                "server": cpu_seconds([server_pid]) - cpu["server"],
                "sandbox": cpu_seconds(in_sandbox) - cpu["sandbox"],
            }
            model_calls = len(fake.requests) - model_calls
            after = database_counts(client)
            # (The two /metrics reads between add no statement: they read the process's counters.)
            sql_per_turn = {name: round((after[name] - database[name]) / turns, 2) for name in after}
            notes = wait_for_notes(client, sid, "turn", warmup + turns)[warmup:]
            sockets = list(server.data_dir.glob(f"sandboxes/*/{session['sandboxId']}/model.sock"))
            calls = 20 if quick else 200
            hop = gateway_hop(fake, sockets[0], calls) if sockets else {}
            if sockets:
                # (calls + 5: gateway_hop warms up with 5 calls first)
                hop["server_cpu_per_call_ms"] = server_cpu_ms(
                    server_pid, calls + 5, lambda: gateway_hop(fake, sockets[0], calls, direct_too=False)
                )
            request_cpu = {
                "GET /health": server_cpu_ms(server_pid, calls, lambda: repeat(client, "/health", calls)),
                "GET /api/sessions/{id}": server_cpu_ms(
                    server_pid, calls, lambda: repeat(client, f"/api/sessions/{sid}", calls)
                ),
            }
            quiesce()
            server_log = server.log()
    report = analyse(direct, responses, notes, server_log)
    report["gateway"] = hop
    report["server_cpu_per_request_ms"] = request_cpu
    report["model_calls_per_turn"] = round(model_calls / turns, 2)
    report["sql_per_turn"] = sql_per_turn
    # CPU per turn (ms): what each process spends, whatever else runs on the machine.
    report["cpu_per_turn_ms"] = {
        "direct_sdk_and_cli": round(direct["cpu_s"] * 1000 / turns, 2),
        "ash_server": round(cpu["server"] * 1000 / turns, 2),
        "ash_sandbox_bridge_and_cli": round(cpu["sandbox"] * 1000 / turns, 2),
    }
    report["direct_run_s"] = round(direct_s, 1)
    report["load_average_after"] = load_average()
    return {"machine": machine(info["isolation"], info["limits"]), "turns": turns, **report}


def analyse(
    direct: dict[str, Any], responses: list[Any], notes: list[dict[str, Any]], server_log: str
) -> dict[str, Any]:
    direct_turn = [ms(t["messages"][-1][0] - t["query"]) for t in direct["turns"]]
    direct_first = [ms(t["messages"][0][0] - t["query"]) for t in direct["turns"]]
    direct_events = [len(t["messages"]) for t in direct["turns"]]
    http_turn: list[float] = []
    http_result: list[float] = []
    http_first: list[float] = []
    inbound: list[float] = []
    outbound: list[float] = []
    tail: list[float] = []
    per_turn: list[float] = []
    sdk_in_sandbox: list[float] = []
    per_event: list[float] = []
    unpaired = 0
    timings = {
        m.group(1): {k: float(v) for k, v in (pair.split("=") for pair in m.group(2).split())}
        for m in TIMING.finditer(server_log)
    }
    server_share: list[float] = []
    server_lookup: list[float] = []
    server_http: list[float] = []
    # The inbound path split further (ASH_DEBUG_TIMING): the session read, the start transaction, the turn task's
    # start, the query's write, and the bridge's wake-up (the write to the query at the bridge, one clock).
    inbound_parts: dict[str, list[float]] = {k: [] for k in INBOUND_PARTS}
    for response, note in zip(responses, notes, strict=True):
        sent = response.sent_ns
        done = response.first("done")
        arrivals = [t for t, name, _ in response.events if name == "message"]
        bridge = note["messages"]
        http_turn.append(ms(done - sent))
        http_result.append(ms(arrivals[-1] - sent))
        http_first.append(ms(arrivals[0] - sent))
        inbound.append(ms(note["query"] - sent))
        outbound.append(ms(arrivals[-1] - bridge[-1]))
        tail.append(ms(done - bridge[-1]))
        sdk = ms(bridge[-1] - note["query"])
        sdk_in_sandbox.append(sdk)
        per_turn.append(ms(done - sent) - sdk)
        if note["id"] in timings:
            # total_ms runs from the request's arrival in the turn runner to the turn's end transaction.
            server_share.append(timings[note["id"]]["total_ms"] - sdk)
            server_lookup.append(timings[note["id"]]["server_lookup_ms"])
            server_http.append(timings[note["id"]]["http_ms"])
            timing = timings[note["id"]]
            for part in INBOUND_PARTS[1:-1]:
                inbound_parts[part].append(timing[part])
            inbound_parts["client_to_app_ms"].append(timing["received_at"] - timing["http_ms"] - sent / 1e6)
            inbound_parts["bridge_wake_ms"].append(note["query"] / 1e6 - timing["query_written_at"])
        if len(arrivals) != len(bridge):
            unpaired += 1
            continue
        per_event.extend(ms(a - b) for a, b in zip(arrivals, bridge, strict=True))
    events = [len(n["messages"]) for n in notes]
    turn_direct, turn_http = summary(direct_turn), summary(http_turn)
    report: dict[str, Any] = {
        "events_per_turn": {"direct": summary(direct_events, 1), "ash": summary(events, 1)},
        "direct_turn_ms": turn_direct,
        "direct_first_message_ms": summary(direct_first),
        "ash_turn_to_done_ms": turn_http,
        "ash_turn_to_result_ms": summary(http_result),
        "ash_first_message_event_ms": summary(http_first),
        "unpaired_difference_ms": {
            q: round(turn_http[q] - turn_direct[q], 3) for q in ("p50", "p95", "p99") if q in turn_http
        },
        "sdk_turn_in_sandbox_ms": summary(sdk_in_sandbox),
        "overhead_per_turn_ms": summary(per_turn),
        "inbound_ms": summary(inbound),
        "outbound_last_message_ms": summary(outbound),
        "outbound_to_done_ms": summary(tail),
        "overhead_per_event_ms": summary(per_event),
        "server_share_per_turn_ms": summary(server_share),
        # In the turn runner before the query goes to the bridge: the session read, the lock, the start transaction.
        "server_before_query_ms": summary(server_lookup),
        # Before that: from the request reaching the app to the turn runner (routing, auth, the body's checks).
        "server_http_before_runner_ms": summary(server_http),
        "server_inbound_split_ms": {k: summary(v) for k, v in inbound_parts.items()},
        "turns_without_event_pairing": unpaired,
    }
    return report


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 200)
    result = run(args.quick, args.runs)
    rows = [
        (name, result[name])
        for name in (
            "direct_turn_ms",
            "ash_turn_to_done_ms",
            "sdk_turn_in_sandbox_ms",
            "overhead_per_turn_ms",
            "inbound_ms",
            "outbound_to_done_ms",
            "overhead_per_event_ms",
            "server_share_per_turn_ms",
            "server_before_query_ms",
            "server_http_before_runner_ms",
        )
    ]
    if result["gateway"]:
        rows += [("gateway: via model.sock", result["gateway"]["via_gateway_ms"])]
        rows += [("gateway: direct TCP", result["gateway"]["direct_ms"])]
    print_table("Message overhead (fake model)", rows)
    print("unpaired difference (Ash - direct):", result["unpaired_difference_ms"])
    print("CPU per turn (ms):", result["cpu_per_turn_ms"], "model calls per turn:", result["model_calls_per_turn"])
    print("SQL per turn:", result["sql_per_turn"])
    print("wrote", write_result("message_overhead", result, quick=args.quick))


if __name__ == "__main__":
    main()
