"""Running the server: `serve` (foreground), `start` / `stop` (background), `status`, `logs`, `health`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from .. import daemon
from ..client import AshClient
from ..config import StoredConfig, config_path, load_stored, read_key_file, save_stored
from ..context import JsonOption, state, wants_json
from ..errors import AshClientError, CliError
from ..models import Health
from ..output import err, health_details, out, print_json

__all__ = ["register"]

HEALTH_TIMEOUT = 60.0
LOG_LINES_ON_FAILURE = 20


def serve() -> None:
    """Run the server in the foreground (configured by ASH_* and ANTHROPIC_* variables; see docs/configuration.md)."""
    # Imported here: the rest of the CLI must work without loading the server (and its database drivers).
    from pydantic import ValidationError

    from ash_server.server import serve as run_server

    try:
        run_server()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid configuration: {problems}") from exc


def start(ctx: typer.Context) -> None:
    """Start the server in the background (SQLite and local sandboxes under the data dir)."""
    env = daemon.server_environment(os.environ)
    data_dir = Path(env["ASH_DATA_DIR"])
    url = daemon.server_url(env)
    pid = daemon.read_pid(data_dir)
    if pid is not None and daemon.is_alive(pid) and daemon.looks_like_ash(pid):
        raise CliError(f"an Ash server is already running (pid {pid}, data dir {data_dir}); stop it with `ash stop`")
    if _health(url, timeout=1.0) is not None:
        raise CliError(f"an Ash server is already answering at {url}; stop it first or set ASH_PORT")

    log = data_dir / daemon.LOG_FILE
    log_offset = log.stat().st_size if log.exists() else 0  # on failure, show this start's lines only
    process = daemon.spawn(env)
    health = _wait_healthy(process, url, data_dir, log_offset)

    key = os.environ.get("ASH_API_KEY") or read_key_file(data_dir)
    path = config_path()
    save_stored(path, StoredConfig(server_url=url, api_key=key, data_dir=str(data_dir), pid=process.pid))

    if state(ctx).json:
        print_json({"serverUrl": url, "dataDir": str(data_dir), "pid": process.pid, "configFile": str(path)})
        return
    out.print(f"[green]●[/] Ash {escape(health['version'])} is running at [bold]{url}[/] (pid {process.pid})")
    out.print(f"  data dir  {escape(str(data_dir))}")
    out.print(f"  log       {escape(str(data_dir / daemon.LOG_FILE))}")
    if key:
        out.print(f"  API key   stored in {escape(str(path))}")
    else:
        err.print("[yellow]No API key found[/] (the data dir already had keys): set ASH_API_KEY to use this server.")


def _health(url: str, *, timeout: float) -> Health | None:
    with AshClient(url) as client:
        try:
            return client.health(timeout=timeout)
        except AshClientError:
            return None


def _wait_healthy(process: subprocess.Popen[bytes], url: str, data_dir: Path, log_offset: int) -> Health:
    log = data_dir / daemon.LOG_FILE
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            daemon.remove_pid(data_dir, process.pid)
            _print_log_tail(log, log_offset)
            raise CliError(f"the server exited with code {code} before it was ready (log: {log})")
        health = _health(url, timeout=1.0)
        if health is not None:
            return health
        time.sleep(0.1)
    daemon.terminate(process.pid, timeout=10)
    daemon.remove_pid(data_dir, process.pid)
    _print_log_tail(log, log_offset)
    raise CliError(f"the server did not answer at {url} within {HEALTH_TIMEOUT:.0f} s (log: {log})")


def _print_log_tail(log: Path, offset: int) -> None:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()[-LOG_LINES_ON_FAILURE:]
    except OSError:
        return
    err.print(Text(f"--- last lines of {log} ---", style="dim"))
    for line in lines:
        err.print(Text(line))


def _running_pid(ctx: typer.Context) -> int | None:
    """The pid of the background server: <data dir>/server.pid first, then the pid in ~/.ash/config.json."""
    config = state(ctx).config
    for pid in (daemon.read_pid(config.data_dir), config.pid):
        if pid is not None and daemon.is_alive(pid) and daemon.looks_like_ash(pid):
            return pid
    return None


def stop(ctx: typer.Context) -> None:
    """Stop the background server (SIGTERM, then SIGKILL after 30 s)."""
    config = state(ctx).config
    pid = _running_pid(ctx)
    if pid is None:
        out.print(f"Ash server is not running (no live server pid in {config.data_dir / daemon.PID_FILE}).")
        return
    killed = daemon.terminate(pid)
    daemon.remove_pid(config.data_dir, pid)
    stored = load_stored(config.config_file)
    if stored.pid == pid:
        save_stored(config.config_file, StoredConfig(stored.server_url, stored.api_key, stored.data_dir, None))
    how = "killed after it ignored SIGTERM for 30 s" if killed else "stopped"
    out.print(f"Ash server {how} (pid {pid}).")


def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Whether the server is running, and a summary of its health."""
    config = state(ctx).config
    pid = _running_pid(ctx)
    health = _health(config.server_url, timeout=3.0)
    if wants_json(ctx, json_output):
        print_json({"running": health is not None, "pid": pid, "serverUrl": config.server_url, "health": health})
    elif health is not None:
        where = f" (pid {pid})" if pid else ""
        out.print(f"[green]●[/] Ash server is running at [bold]{config.server_url}[/]{where}")
        health_details(health, config.server_url)
        if pid:
            out.print(f"[dim]data dir {escape(str(config.data_dir))}, log `ash logs`[/]")
    elif pid is not None:
        out.print(
            f"[yellow]●[/] server process {pid} is alive but {config.server_url} does not answer (see `ash logs`)"
        )
    else:
        out.print(f"[red]●[/] Ash server is not running at {config.server_url} (start it with `ash start`)")
    if health is None:
        raise typer.Exit(1)


def logs(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C to stop).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the last lines to print.")] = 50,
) -> None:
    """Print the background server's log (<data dir>/server.log)."""
    path = state(ctx).config.data_dir / daemon.LOG_FILE
    if not path.is_file():
        raise CliError(f"no server log at {path} (the log is written by a server started with `ash start`)")
    if not follow:
        for line in daemon.tail(path, lines):
            sys.stdout.write(line + "\n")
        return
    try:
        for line in daemon.follow(path, lines):
            sys.stdout.write(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def health(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Check that the server answers: GET /health (no API key needed)."""
    st = state(ctx)
    with st.client(auth=False) as client:
        result = client.health(timeout=10.0)
    if wants_json(ctx, json_output):
        print_json(result)
    else:
        health_details(result, st.config.server_url)


def register(app: typer.Typer) -> None:
    for command in (serve, start, stop, status, logs, health):
        app.command()(command)
