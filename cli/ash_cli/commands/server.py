"""Running the server: `serve` (foreground), `start` / `stop` (background), `status`, `logs`, `health`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from .. import daemon, docker
from ..client import AshClient
from ..config import DEFAULT_HOST, StoredConfig, config_path, default_port, load_stored, read_key_file, save_stored
from ..context import JsonOption, state, wants_json
from ..errors import AshClientError, CliError
from ..lifecycle import STOP_TIMEOUT, LogWatch, Progress, stop_server, wait_ready
from ..logfmt import human_line
from ..models import Health
from ..output import err, health_details, out, print_json

__all__ = ["register"]


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


def start(
    ctx: typer.Context,
    in_docker: Annotated[
        bool, typer.Option("--docker", help="Run the server in a Docker container (docs/self-hosting/docker.md).")
    ] = False,
    image: Annotated[
        str | None, typer.Option(help="With --docker: the image (default ghcr.io/ash-ai/ash:<version>).")
    ] = None,
    no_pull: Annotated[bool, typer.Option("--no-pull", help="With --docker: use the local image as it is.")] = False,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="With --docker: the host port (default ASH_PORT or 4100).")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="With --docker: NAME=value, or NAME to pass this shell's value (repeat)."),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="With --docker: the server's ASH_DATABASE_URL (default SQLite in the data dir).")
    ] = None,
) -> None:
    """Start the server in the background (SQLite and local sandboxes under the data dir), or in Docker."""
    if in_docker:
        _start_docker(ctx, image, not no_pull, port, env or [], database_url)
        return
    if image or no_pull or port or env or database_url:
        raise CliError(
            "--image, --no-pull, --port, -e and --database-url go with --docker (set ASH_* variables instead)"
        )
    env_ = daemon.server_environment(os.environ)
    data_dir = Path(env_["ASH_DATA_DIR"])
    url = daemon.server_url(env_)
    pid = daemon.read_pid(data_dir)
    if pid is not None and daemon.is_alive(pid) and daemon.looks_like_ash(pid):
        raise CliError(f"an Ash server is already running (pid {pid}, data dir {data_dir}); stop it with `ash stop`")
    if _health(url, timeout=1.0) is not None:
        raise CliError(f"an Ash server is already answering at {url}; stop it first or set ASH_PORT")

    progress = Progress(err)
    watch = LogWatch(data_dir / daemon.LOG_FILE)  # on failure, show this start's lines only
    process = daemon.spawn(env_)
    progress.step(f"started the server process (pid {process.pid}), data dir {data_dir}, log {watch.path}")
    health = wait_ready(process, url, data_dir, watch, progress)
    ready_in = progress.elapsed

    key = os.environ.get("ASH_API_KEY") or read_key_file(data_dir)
    path = config_path()
    save_stored(path, StoredConfig(server_url=url, api_key=key, data_dir=str(data_dir), pid=process.pid))

    if state(ctx).json:
        print_json({"serverUrl": url, "dataDir": str(data_dir), "pid": process.pid, "configFile": str(path)})
        return
    out.print(
        f"[green]●[/] Ash {escape(health['version'])} is running at [bold]{url}[/] (pid {process.pid}), "
        f"ready in {ready_in:.1f} s"
    )
    out.print(f"  data dir  {escape(str(data_dir))}")
    out.print(f"  log       {escape(str(watch.path))}")
    if key:
        out.print(f"  API key   stored in {escape(str(path))}")
    else:
        err.print("[yellow]No API key found[/] (the data dir already had keys): set ASH_API_KEY to use this server.")
    if health.get("modelKey") is False:
        err.print(
            "[yellow]No model key:[/] messages will fail until the server has one. Set ANTHROPIC_API_KEY (or "
            "ANTHROPIC_BASE_URL for a proxy), then `ash stop` and `ash start` again."
        )


def _start_docker(
    ctx: typer.Context, image: str | None, pull: bool, port: int | None, env: list[str], database_url: str | None
) -> None:
    environ = os.environ
    data_dir = docker.data_dir_for(environ)
    host_port = port or default_port(environ)
    url = f"http://{DEFAULT_HOST}:{host_port}"
    if _health(url, timeout=1.0) is not None:
        raise CliError(f"an Ash server is already answering at {url}; stop it first or pass --port")
    path = config_path()
    stored = load_stored(path)
    # Keep the key a previous start gave this data dir, so clients configured with it go on working.
    same_dir = stored.data_dir == str(data_dir)
    api_key = environ.get("ASH_API_KEY") or (stored.api_key if same_dir else None) or read_key_file(data_dir)
    options = docker.DockerOptions(
        data_dir=data_dir,
        port=host_port,
        image=image or docker.default_image(),
        pull=pull,
        env=env,
        database_url=database_url,
    )
    key = docker.start(options, environ, api_key, say=lambda message: err.print(f"[yellow]{escape(message)}[/]"))
    save_stored(path, StoredConfig(server_url=url, api_key=key, data_dir=str(data_dir), container=docker.CONTAINER))
    health = docker.wait_until_healthy(environ, lambda: _health(url, timeout=1.0), show=_print_lines)

    if state(ctx).json:
        print_json({"serverUrl": url, "dataDir": str(data_dir), "container": docker.CONTAINER, "configFile": str(path)})
        return
    out.print(
        f"[green]●[/] Ash {escape(health['version'])} is running at [bold]{url}[/] (container {docker.CONTAINER})"
    )
    out.print(f"  image     {escape(options.image)}")
    out.print(f"  data dir  {escape(str(data_dir))} (mounted at /data)")
    out.print(f"  API key   stored in {escape(str(path))}")


def _print_lines(lines: list[str]) -> None:
    err.print(Text(f"--- last lines of the {docker.CONTAINER} container ---", style="dim"))
    for line in lines:
        err.print(Text(line))


def _health(url: str, *, timeout: float) -> Health | None:
    with AshClient(url) as client:
        try:
            return client.health(timeout=timeout)
        except AshClientError:
            return None


def _running_pid(ctx: typer.Context) -> int | None:
    """The pid of the background server: <data dir>/server.pid first, then the pid in ~/.ash/config.json."""
    config = state(ctx).config
    for pid in (daemon.read_pid(config.data_dir), config.pid):
        if pid is not None and daemon.is_alive(pid) and daemon.looks_like_ash(pid):
            return pid
    return None


def stop(ctx: typer.Context) -> None:
    """Stop the background server (SIGTERM, then SIGKILL after 45 s), or its container."""
    config = state(ctx).config
    stored = load_stored(config.config_file)
    if stored.container:
        removed = docker.stop(os.environ)
        save_stored(config.config_file, StoredConfig(stored.server_url, stored.api_key, stored.data_dir))
        if removed:
            out.print(f"Ash container {stored.container} stopped and removed.")
        else:
            out.print(f"Ash container {stored.container} is not there (already removed).")
        return
    pid = _running_pid(ctx)
    if pid is None:
        out.print(f"Ash server is not running (no live server pid in {config.data_dir / daemon.PID_FILE}).")
        return
    progress = Progress(err)
    killed = stop_server(pid, LogWatch(config.data_dir / daemon.LOG_FILE), progress)
    daemon.remove_pid(config.data_dir, pid)
    stored = load_stored(config.config_file)
    if stored.pid == pid:
        save_stored(config.config_file, StoredConfig(stored.server_url, stored.api_key, stored.data_dir, None))
    if killed:
        out.print(f"Ash server killed (pid {pid}): it did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM.")
    else:
        out.print(f"Ash server stopped (pid {pid}) in {progress.elapsed:.1f} s.")


def _container_state(config_file: Path) -> dict[str, str] | None:
    """The container of `ash start --docker`, as docker reports it; None when the server is not a container."""
    name = load_stored(config_file).container
    if not name:
        return None
    try:
        current = docker.state(docker.Docker(os.environ))
    except CliError:  # docker is gone: say so rather than fail
        return {"name": name, "status": "", "health": ""}
    if current is None:
        return {"name": name, "status": "", "health": ""}
    return {"name": name, "status": current.status, "health": current.health}


def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Whether the server is running, and a summary of its health."""
    config = state(ctx).config
    pid = _running_pid(ctx)
    health = _health(config.server_url, timeout=3.0)
    container = _container_state(config.config_file)
    if wants_json(ctx, json_output):
        result: dict[str, object] = {"running": health is not None, "pid": pid, "serverUrl": config.server_url}
        if container is not None:
            result["container"] = container
        print_json({**result, "health": health})
    elif health is not None:
        where = f" (pid {pid})" if pid else ""
        out.print(f"[green]●[/] Ash server is running at [bold]{config.server_url}[/]{where}")
        if container is not None:
            out.print(f"  container {container['name']}: {container['status']} {container['health']}".rstrip())
        health_details(health, config.server_url)
        if pid:
            out.print(f"[dim]data dir {escape(str(config.data_dir))}, log `ash logs`[/]")
    elif pid is not None:
        out.print(
            f"[yellow]●[/] server process {pid} is alive but {config.server_url} does not answer (see `ash logs`)"
        )
    elif container is not None:
        out.print(
            f"[yellow]●[/] container {container['name']} is {container['status'] or 'gone'} and "
            f"{config.server_url} does not answer (see `ash logs`)"
        )
    else:
        out.print(f"[red]●[/] Ash server is not running at {config.server_url} (start it with `ash start`)")
    if health is None:
        raise typer.Exit(1)


def logs(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C to stop).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the last lines to print.")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="The raw JSON lines, as the server wrote them.")] = False,
) -> None:
    """Print the background server's log (<data dir>/server.log): time, level, message; or its container's."""
    if load_stored(state(ctx).config.config_file).container:
        code = docker.logs(os.environ, lines, follow)
        if code not in (0, 130):  # 130: Ctrl-C while following
            raise typer.Exit(code)
        return
    path = state(ctx).config.data_dir / daemon.LOG_FILE
    if not path.is_file():
        raise CliError(f"no server log at {path} (the log is written by a server started with `ash start`)")
    raw = wants_json(ctx, json_output)

    def write(line: str) -> None:
        if raw:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()
        else:
            out.print(human_line(line))  # Rich: styled on a terminal, plain text into a pipe or file

    if not follow:
        for line in daemon.tail(path, lines):
            write(line)
        return
    try:
        for line in daemon.follow(path, lines):
            write(line)
    except KeyboardInterrupt:
        pass


def health(
    ctx: typer.Context,
    model: Annotated[
        bool, typer.Option("--model", help="Also check that the model accepts the server's key (needs an API key).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Check that the server answers: GET /health (no API key needed); --model: GET /api/model/check too."""
    st = state(ctx)
    with st.client(auth=False) as client:
        result = client.health(timeout=10.0)
    check = None
    if model:
        with st.client() as client:
            check = client.check_model()
    if wants_json(ctx, json_output):
        print_json(result if check is None else {**result, "modelCheck": check})
    else:
        health_details(result, st.config.server_url)
        if check is not None:
            out.print(_model_verdict(check))
    if check is not None and not check.get("ok"):
        raise typer.Exit(1)


def _model_verdict(check: dict[str, Any]) -> str:
    if check.get("ok"):
        return "[green]●[/] the model accepts the server's key"
    if not check.get("keyConfigured"):
        return "[red]●[/] the server has no model key (set ANTHROPIC_API_KEY for it)"
    reason = escape(str(check.get("error") or "no reason given"))
    if check.get("status") is None:  # never reached: the URL, the network, a proxy
        return f"[red]●[/] the model could not be reached: {reason}"
    return f"[red]●[/] the model refused the server's key ({check['status']}): {reason}"


def register(app: typer.Typer) -> None:
    for command in (serve, start, stop, status, logs, health):
        app.command()(command)
