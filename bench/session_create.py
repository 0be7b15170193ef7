"""Session create (from the warm pool and cold) and the first message of a new session, against the fake model.

    python -m bench.session_create [--quick] [--runs 30]

Per run: `POST /api/sessions` served from the warm pool (a sandbox started ahead: no process start at all), then
the session's first message: time to its first SDK event (`message`), its first text and `done`; then the same
for a session created cold (its sandbox, and the Claude Code CLI in it, start inside the request). Each warm create
waits until the pool's replacement is up, so no sample shares the CPU with a sandbox start it did not cause. Raw
keep-alive client (common.RawClient), so the client adds microseconds, not the ~1.5 ms of httpx. The instrumented
bridge (common.PROBE_SOURCE) splits the first event into Ash's part and the SDK's: request → query at the bridge,
query → the SDK's first message, that message → the client.
"""

from __future__ import annotations

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
    ms,
    print_table,
    probe_entry,
    quiesce,
    summary,
    text,
    wait_for_notes,
    wait_pool_settled,
    write_result,
)


def first_message(client: RawClient, session_id: str, results: dict[str, list[float]], prefix: str) -> int:
    """Send the session's first message; record its first event, first text and done. Returns when its first
    SDK event arrived (CLOCK_MONOTONIC ns)."""
    response = client.message(session_id, "first message")
    first = response.first("message")
    assert first is not None
    results[f"{prefix}_first_message_first_event_ms"].append(ms(first - response.sent_ns))
    delta = response.first("text_delta")
    if delta is not None:
        results[f"{prefix}_first_message_first_text_ms"].append(ms(delta - response.sent_ns))
    results[f"{prefix}_first_message_turn_ms"].append(
        ms((response.first("done") or response.end_ns) - response.sent_ns)
    )
    notes = wait_for_notes(client, session_id, "turn", 1)
    if notes:
        note = notes[-1]
        results[f"{prefix}_first_event_ash_inbound_ms"].append(ms(note["query"] - response.sent_ns))
        results[f"{prefix}_first_event_sdk_ms"].append(ms(note["messages"][0] - note["query"]))
        results[f"{prefix}_first_event_ash_outbound_ms"].append(ms(first - note["messages"][0]))
    return first


def run(quick: bool, runs: int | None = None) -> dict[str, Any]:
    runs = runs or (3 if quick else 30)
    cold_runs = max(2, runs // 2)
    names = [
        "create_warm_pool_ms",
        "api_floor_ms",
        "create_cold_ms",
        *(
            f"{path}_{what}"
            for path in ("warm", "cold")
            for what in (
                "first_message_first_event_ms",
                "first_event_ash_inbound_ms",
                "first_event_sdk_ms",
                "first_event_ash_outbound_ms",
                "first_message_first_text_ms",
                "first_message_turn_ms",
                "create_to_first_event_ms",
            )
        ),
    ]
    results: dict[str, list[float]] = {name: [] for name in names}
    with FakeAnthropic() as fake:
        fake.on("first message", text("hello there"))
        with ash_server(fake, {"ASH_BRIDGE_ENTRY": probe_entry()}) as (_, client):
            info = health(client)
            deploy(client, "warm", warm_pool=1)
            deploy(client, "cold")
            for _ in range(runs):
                wait_pool_settled(client, 1)
                quiesce(0.3)
                hits = health(client)["pool"]["preWarmHits"]
                response = client.ok("POST", "/api/sessions", {"agent": "warm"})
                if health(client)["pool"]["preWarmHits"] != hits + 1:
                    raise RuntimeError("a warm create was not served from the warm pool")
                results["create_warm_pool_ms"].append(response.elapsed_ms)
                sid = response.json()["session"]["id"]
                # The floor of an authenticated request about a session, at the same moment: HTTP, the key
                # check, one read (what a warm create costs beyond it is its own).
                results["api_floor_ms"].append(client.ok("GET", f"/api/sessions/{sid}").elapsed_ms)
                # The replacement warm sandbox starts now; the first message waits, as a real client would not,
                # so that it is measured alone.
                wait_pool_settled(client, 1)
                quiesce(0.3)
                first_message(client, sid, results, "warm")
                # Create → first event as a client that sends at once would see it, minus the settling wait.
                results["warm_create_to_first_event_ms"].append(
                    response.elapsed_ms + results["warm_first_message_first_event_ms"][-1]
                )
                client.ok("DELETE", f"/api/sessions/{sid}")
            for _ in range(cold_runs):
                wait_pool_settled(client, 1)
                quiesce(0.3)
                response = client.ok("POST", "/api/sessions", {"agent": "cold"})
                results["create_cold_ms"].append(response.elapsed_ms)
                sid = response.json()["session"]["id"]
                first = first_message(client, sid, results, "cold")
                results["cold_create_to_first_event_ms"].append(ms(first - response.sent_ns))
                client.ok("DELETE", f"/api/sessions/{sid}")
    return {
        "machine": machine(info["isolation"], info["limits"]),
        "runs": {"warm": runs, "cold": cold_runs},
        "load_average_after": load_average(),
        **{name: summary(values) for name, values in results.items()},
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 30)
    result = run(args.quick, args.runs)
    rows = [(name, value) for name, value in result.items() if isinstance(value, dict) and "n" in value]
    print_table("Session create and first message (fake model)", rows)
    print("wrote", write_result("session_create", result, quick=args.quick))


if __name__ == "__main__":
    main()
