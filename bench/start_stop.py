"""`ash start` and `ash stop` as a user runs them (the real CLI processes), and a fresh clone's first answer.

    python -m bench.start_stop [--quick] [--runs 5] [--fresh-clone]

Per run, a new HOME and data dir (so every first start migrates a new database, as on a new machine), then:
- **start, first**: `ash start` from invocation to its exit (it exits when `/health` answers), and inside it the
  server's part as its log tells it: from `Started server process` (imports done) to `Application startup
  complete`; then `ash stop` (idle) from invocation to exit;
- **start, again**: the same data dir started a second time (no migration, the key exists), and stopped.
Once: **stop with an open stream**, an `ash session tail` attached to a session when `ash stop` runs: the server's
graceful shutdown waits for open connections (uvicorn's timeout_graceful_shutdown, 30 s) before it stops its
sandboxes, so this is what a stop costs while a client follows a session.

`--fresh-clone` (issue 17's "Done means"): `git clone` of this checkout's HEAD into /tmp, then, timed one by one and
in all, `scripts/install.sh && .venv/bin/ash start`, `ash deploy examples/hello-agent`, and `ash chat hello-agent
hello` until its first streamed byte, against the fake model (tests/fakes/anthropic_api.py). The install reuses
this machine's uv cache (no download), as a second install on the same machine would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, FakeAnthropic, arguments, load_average, machine, print_table, summary, text, write_result

ASH = [sys.executable, "-m", "ash_cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_env(model_url: str) -> dict[str, str]:
    root = Path(tempfile.mkdtemp(prefix="ash-bench-"))
    root.chmod(0o755)  # sandboxes run as another user when root runs this
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ASH_API_KEY", "ASH_SERVER_URL", "ASH_AGENT_ROOTS")}
    env.update(
        HOME=str(root / "home"),
        ASH_DATA_DIR=str(root / "data"),
        ASH_PORT=str(free_port()),
        ANTHROPIC_BASE_URL=model_url,
        ANTHROPIC_API_KEY="sk-bench",
        CLAUDE_CODE_MAX_RETRIES="0",
    )
    return env


def timed(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    elapsed = (time.monotonic() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, result


def _log_ms(data_dir: Path, pid: int) -> float | None:
    """`Started server process [pid]` → `Application startup complete`, from the log's timestamps."""
    begin = end = None
    for line in (data_dir / "server.log").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        when = datetime.strptime(record["ts"], "%Y-%m-%d %H:%M:%S,%f")
        if record["message"] == f"Started server process [{pid}]":
            begin = when
        elif begin is not None and record["message"] == "Application startup complete.":
            end = when
    return None if begin is None or end is None else (end - begin).total_seconds() * 1000


def start_and_stop(env: dict[str, str], results: dict[str, list[float]], prefix: str) -> None:
    start_ms, _ = timed([*ASH, "start"], env)
    pid = json.loads((Path(env["HOME"]) / ".ash" / "config.json").read_text())["pid"]
    results[f"{prefix}_start_ms"].append(start_ms)
    inside = _log_ms(Path(env["ASH_DATA_DIR"]), pid)
    if inside is not None:
        results[f"{prefix}_server_startup_ms"].append(inside)
    stop_ms, _ = timed([*ASH, "stop"], env)
    results[f"{prefix}_stop_ms"].append(stop_ms)


def stop_with_open_stream(env: dict[str, str]) -> float:
    timed([*ASH, "start"], env)
    timed([*ASH, "deploy", str(ROOT / "examples" / "hello-agent")], env)
    _, created = timed([*ASH, "session", "create", "hello-agent"], env)
    tail = subprocess.Popen(
        [*ASH, "session", "tail", created.stdout.strip()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(2)  # attached
        stop_ms, _ = timed([*ASH, "stop"], env)
    finally:
        os.killpg(tail.pid, signal.SIGTERM)
        tail.wait(timeout=30)
    return stop_ms


def fresh_clone(model_url: str) -> dict[str, Any]:
    """Issue 17's Done means: a fresh clone to its first streamed answer, each step and the whole."""
    clone = Path(tempfile.mkdtemp(prefix="ash-clone-"))
    clone.chmod(0o755)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone / "ash")], check=True)
    repo = clone / "ash"
    env = fresh_env(model_url)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{repo / '.venv' / 'bin'}:{env['PATH']}"
    steps: dict[str, float] = {}
    try:
        started = time.monotonic()
        steps["install_ms"], _ = timed(["scripts/install.sh"], env, cwd=repo)
        steps["start_ms"], _ = timed([str(repo / ".venv" / "bin" / "ash"), "start"], env, cwd=repo)
        steps["deploy_ms"], _ = timed(["ash", "deploy", "examples/hello-agent", "--name", "hello-agent"], env, repo)
        chat_started = time.monotonic()
        chat = subprocess.Popen(
            ["ash", "chat", "hello-agent", "hello"], env=env, cwd=repo, stdout=subprocess.PIPE, bufsize=0
        )
        assert chat.stdout is not None
        first = chat.stdout.read(1)
        steps["chat_to_first_byte_ms"] = (time.monotonic() - chat_started) * 1000
        steps["total_ms"] = (time.monotonic() - started) * 1000
        rest = chat.stdout.read()
        if chat.wait(timeout=120) != 0 or not first:
            raise RuntimeError(f"ash chat failed: {(first + rest)!r}")
        steps["answer"] = (first + rest).decode().strip()  # type: ignore[assignment]
    finally:
        subprocess.run([str(repo / ".venv" / "bin" / "ash"), "stop"], env=env, cwd=repo, capture_output=True)
        shutil.rmtree(clone, ignore_errors=True)
        shutil.rmtree(Path(env["HOME"]).parent, ignore_errors=True)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in steps.items()}


def run(quick: bool, runs: int | None = None, clone: bool = False) -> dict[str, Any]:
    runs = runs or (1 if quick else 5)
    names = [f"{p}_{m}" for p in ("first", "again") for m in ("start_ms", "server_startup_ms", "stop_ms")]
    results: dict[str, list[float]] = {name: [] for name in names}
    with FakeAnthropic(default=text("Hello from the fake model.")) as fake:
        for _ in range(runs):
            env = fresh_env(fake.url)
            try:
                start_and_stop(env, results, "first")
                start_and_stop(env, results, "again")
            finally:
                shutil.rmtree(Path(env["HOME"]).parent, ignore_errors=True)
        env = fresh_env(fake.url)
        try:
            open_stream_stop_ms = stop_with_open_stream(env)
        finally:
            subprocess.run([*ASH, "stop"], env=env, capture_output=True)
            shutil.rmtree(Path(env["HOME"]).parent, ignore_errors=True)
        first_answer = fresh_clone(fake.url) if clone else None
    return {
        "machine": machine(),
        "runs": runs,
        "load_average_after": load_average(),
        **{name: summary(values, 1) for name, values in results.items()},
        "stop_with_open_stream_ms": round(open_stream_stop_ms, 1),
        **({"fresh_clone_to_first_answer": first_answer} if first_answer else {}),
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 5, {"--fresh-clone": "also a fresh clone to its first answer"})
    result = run(args.quick, args.runs, args.fresh_clone)
    rows = [(name, value) for name, value in result.items() if isinstance(value, dict) and "n" in value]
    print_table("ash start / ash stop (real CLI processes)", rows)
    print("stop with an open stream:", result["stop_with_open_stream_ms"], "ms")
    if "fresh_clone_to_first_answer" in result:
        print("fresh clone to first answer:", result["fresh_clone_to_first_answer"])
    print("wrote", write_result("start_stop", result, quick=args.quick))


if __name__ == "__main__":
    main()
