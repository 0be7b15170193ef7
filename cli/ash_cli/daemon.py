"""The background server of `ash start`: its environment, the detached process, the pid file, stopping it, its log.

Nothing here imports the server: the daemon is `python -m ash_cli serve` in its own session, so it outlives the
shell that started it and gets no signals meant for that shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from .config import DEFAULT_HOST, default_data_dir, default_port
from .errors import CliError

__all__ = [
    "LOG_FILE",
    "PID_FILE",
    "follow",
    "is_alive",
    "kill",
    "looks_like_ash",
    "read_pid",
    "remove_pid",
    "server_environment",
    "server_url",
    "signal_stop",
    "spawn",
    "tail",
    "terminate",
]

LOG_FILE = "server.log"
PID_FILE = "server.pid"
STOP_TIMEOUT = 45.0  # as systemd/ash-server.service: TimeoutStopSec=45s


def server_url(env: Mapping[str, str]) -> str:
    """Where a server started with this environment answers (a wildcard bind is reached on loopback)."""
    host = env.get("ASH_HOST", "").strip() or DEFAULT_HOST
    if host in ("0.0.0.0", "::", "[::]"):  # noqa: S104 - a comparison, not a bind
        host = DEFAULT_HOST
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{default_port(env)}"


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The inherited environment plus the embedded defaults of `ash start`."""
    out = dict(env)
    out["ASH_DATA_DIR"] = str(default_data_dir(env))
    out["ASH_PORT"] = str(default_port(env))
    # No ASH_AGENT_ROOTS default: a path deploy reads the server's disk, and the home folder holds the operator's
    # secrets (~/.ssh, ~/.ash). The server's own default is `<data dir>/sources`; `ash deploy` uploads files.
    return out


def spawn(env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `python -m ash_cli serve` detached, appending its output to <data dir>/server.log; write the pid."""
    data_dir = Path(env["ASH_DATA_DIR"])
    # 0711: the server makes it so anyway; sandbox users must traverse it, but list nothing.
    data_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    log_fd = os.open(data_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "ash_cli", "serve"],
            env=dict(env),
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        os.close(log_fd)
    write_pid(data_dir, process.pid)
    return process


def write_pid(data_dir: Path, pid: int) -> None:
    path = data_dir / PID_FILE
    tmp = path.with_name(PID_FILE + ".tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def read_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def remove_pid(data_dir: Path, pid: int) -> None:
    """Remove the pid file if it still names `pid` (a newer server may have replaced it)."""
    if read_pid(data_dir) == pid:
        (data_dir / PID_FILE).unlink(missing_ok=True)


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (in a container, nobody may reap the detached server)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def looks_like_ash(pid: int) -> bool:
    """Guard against a stale pid reused by an unrelated process. Without /proc, trust the pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    args = cmdline.split(b"\0")
    return any(b"ash_cli" in a or b"ash_server" in a or a.rsplit(b"/", 1)[-1] == b"ash" for a in args)


def signal_stop(pid: int) -> bool:
    """SIGTERM: the server's graceful shutdown. False if the process is already gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def kill(pid: int) -> None:
    """SIGKILL the server's process group (it leads one: spawned with start_new_session), then wait 5 s for it."""
    try:
        os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, 5.0):
        raise CliError(f"the server (pid {pid}) did not exit even after SIGKILL")


def terminate(pid: int, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM, wait up to `timeout` s for a graceful shutdown (sandboxes stopped, state saved), then SIGKILL.

    Returns True if the process had to be killed.
    """
    if not signal_stop(pid):
        return False
    if _wait_gone(pid, timeout):
        return False
    kill(pid)
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file, read from its end (logs grow large)."""
    if lines <= 0:
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        chunk = b""
        while position > 0 and chunk.count(b"\n") <= lines:
            step = min(64 * 1024, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + chunk
    text = chunk.decode(errors="replace").splitlines()
    return text[-lines:]


def follow(path: Path, lines: int, poll: float = 0.25) -> Iterator[str]:
    """The last `lines` lines, then every line appended, until the caller stops (Ctrl-C). Survives truncation."""
    yield from (line + "\n" for line in tail(path, lines))
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            line = handle.readline()
            if line:
                yield line.decode(errors="replace")
                continue
            try:
                if path.stat().st_size < handle.tell():
                    handle.seek(0)
            except FileNotFoundError:
                pass
            time.sleep(poll)
