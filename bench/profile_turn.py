"""A flame graph of the server's CPU during turns (py-spy).

    python -m bench.profile_turn [--runs 300] [--label after]

Starts the real server on the fake model, runs `--runs` turns of one session one after another with py-spy
sampling the server process only (`--idle` off: waiting is not cost), and writes
`docs/benchmarks/flame-turn-<label>.svg`. (The SQL a turn sends is counted by tests/sessions/test_turn_writes.py.)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, FakeAnthropic, ash_server, deploy, quiesce, text

PROMPT = "profile me"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--label", default="after")
    parser.add_argument("--format", default="flamegraph", choices=["flamegraph", "raw"], help="raw: collapsed stacks")
    parser.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL (a thread blocked in a syscall is not work)"
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: scripts/install.sh --dev installs it")
    out = RESULTS / f"flame-turn-{args.label}.{'svg' if args.format == 'flamegraph' else 'txt'}"
    with FakeAnthropic() as fake:
        fake.on(PROMPT, text("pong"))
        with ash_server(fake) as (server, client):
            deploy(client, "profile")
            sid = client.ok("POST", "/api/sessions", {"agent": "profile"}).json()["session"]["id"]
            for n in range(5):
                client.message(sid, f"{PROMPT} warm-up {n}")
            quiesce()
            assert server.process is not None
            record = ["record", "--pid", str(server.process.pid), "--rate", "500", "--format", args.format]
            if args.gil:
                record.append("--gil")
            recorder = subprocess.Popen(
                [py_spy, *record, "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)  # py-spy attaches
            started = time.monotonic()
            for n in range(args.runs):
                client.message(sid, f"{PROMPT} {n}")
            elapsed = time.monotonic() - started
            recorder.send_signal(2)  # SIGINT: py-spy writes the graph and exits
            _, err = recorder.communicate(timeout=60)
            if recorder.returncode not in (0, None) or not out.exists():
                raise SystemExit(f"py-spy failed: {err.decode()[-2000:]}")
    print(f"{args.runs} turns in {elapsed:.1f} s; flame graph: {out}")


if __name__ == "__main__":
    main()
