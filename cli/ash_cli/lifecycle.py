"""`ash start` and `ash stop` as a person watches them: a line per step, the server's own news from its log, and
a last line saying how it ended and how long it took.

Start returns the moment `/health` answers (polled every 50 ms on one connection pool); stop returns the moment the
process is gone. Stop is bounded as the systemd unit is (TimeoutStopSec=45s): the server's graceful shutdown waits
up to 30 s for open connections (uvicorn's timeout_graceful_shutdown), then stops its sandboxes and saves their
state, so killing it at 30 s, as `ash stop` used to, could cut that short.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from . import daemon
from .client import AshClient
from .errors import AshClientError, CliError
from .logfmt import log_record, strip_ansi
from .models import Health

__all__ = [
    "HEALTH_TIMEOUT",
    "POLL",
    "STOP_TIMEOUT",
    "LogWatch",
    "Progress",
    "stop_server",
    "wait_ready",
]

HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = daemon.STOP_TIMEOUT
POLL = 0.05
GRACEFUL_S = 30  # ash_server/server.py: uvicorn's timeout_graceful_shutdown
WAITING_FOR_CONNECTIONS = "Waiting for connections to close"  # uvicorn's line when some are open
STILL_EVERY = 5.0  # a silent wait says it is still waiting this often
LOG_LINES_ON_FAILURE = 20
# The server's log lines shown while it starts or stops: its own, uvicorn's lifecycle ones, every warning. The
# migrations' one line each (dozens on a first start) are summed up by `database schema migrated to N`.
_QUIET_LOGGERS = ("ash_server.store.migrations", "alembic.")


class LogWatch:
    """The lines appended to the server log since `offset`, read as they come (the file may not exist yet)."""

    def __init__(self, path: Path, offset: int | None = None) -> None:
        self.path = path
        self.offset = offset if offset is not None else (path.stat().st_size if path.exists() else 0)
        self._start = self.offset
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def since_start(self, limit: int) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._start)
                return handle.read().decode(errors="replace").splitlines()[-limit:]
        except OSError:
            return []


def _newsworthy(line: str) -> str | None:
    """What a log line tells someone waiting for the server, or None to leave it out."""
    record = log_record(line)
    if record is None:  # a traceback before logging was set up: printed whole if the start fails
        return None
    message = strip_ansi(str(record["message"])).strip()
    logger, level = str(record.get("logger", "")), str(record.get("level", ""))
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return f"{level.lower()}: {message}"
    if logger.startswith(_QUIET_LOGGERS) or level == "DEBUG":
        return None
    return message


class Progress:
    """Step lines on stderr: `·` for news, the elapsed time since the command began on each."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self._said = self.started

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, message: str) -> None:
        self._said = time.monotonic()
        self.console.print(Text(f"{self.elapsed:5.1f}s ", style="dim") + Text("· " + message))

    def log(self, watch: LogWatch) -> list[str]:
        """Print the news of the lines added to the log since the last call; return it."""
        said = []
        for line in watch.new_lines():
            news = _newsworthy(line)
            if news:
                self.step(f"server: {news}")
                said.append(news)
        return said

    def still(self, what: str) -> None:
        if time.monotonic() - self._said >= STILL_EVERY:
            self.step(f"still {what}…")


def _print_tail(console: Console, watch: LogWatch) -> None:
    console.print(Text(f"--- last lines of {watch.path} ---", style="dim"))
    for line in watch.since_start(LOG_LINES_ON_FAILURE):
        console.print(Text(strip_ansi(line)))


def wait_ready(
    process: subprocess.Popen[bytes], url: str, data_dir: Path, watch: LogWatch, progress: Progress
) -> Health:
    """Poll `/health` until it answers; fail early (with the log's end) if the process exits first."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    progress.step(f"waiting for {url}/health")
    with AshClient(url) as client:
        while time.monotonic() < deadline:
            progress.log(watch)
            code = process.poll()
            if code is not None:
                daemon.remove_pid(data_dir, process.pid)
                _print_tail(progress.console, watch)
                raise CliError(f"the server exited with code {code} before it was ready (log: {watch.path})")
            try:
                return client.health(timeout=1.0)
            except AshClientError:
                pass
            progress.still("waiting for /health")
            time.sleep(POLL)
    daemon.terminate(process.pid, timeout=10)
    daemon.remove_pid(data_dir, process.pid)
    _print_tail(progress.console, watch)
    raise CliError(f"the server did not answer at {url} within {HEALTH_TIMEOUT:.0f} s (log: {watch.path})")


def stop_server(pid: int, watch: LogWatch, progress: Progress, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM, follow the shutdown in the log until the process is gone; SIGKILL its group after `timeout` s.

    Returns True if it had to be killed.
    """
    progress.step(f"sent SIGTERM to the server (pid {pid}); it stops its sandboxes and saves their state")
    if not daemon.signal_stop(pid):
        return False
    deadline = time.monotonic() + timeout
    while daemon.is_alive(pid):
        if any(news.startswith(WAITING_FOR_CONNECTIONS) for news in progress.log(watch)):
            progress.step(
                "open connections (an `ash session tail`, a dashboard page following a session) keep it up to "
                f"{GRACEFUL_S} s; ending them lets it stop now"
            )
        if time.monotonic() >= deadline:
            progress.step(f"the server did not exit within {timeout:.0f} s of SIGTERM: SIGKILL")
            daemon.kill(pid)
            return True
        progress.still(f"waiting for pid {pid} to exit ({progress.elapsed:.0f} s of at most {timeout:.0f})")
        time.sleep(POLL)
    progress.log(watch)
    return False
