"""What every benchmark shares: percentiles, the machine, the JSON results, a table, a raw HTTP client, a real Ash
server on the fake model, and an instrumented bridge that says when things happened inside the sandbox.

Times that cross processes are CLOCK_MONOTONIC (`time.monotonic_ns()`), one clock for every process on the machine
(bubblewrap does not give a sandbox a time namespace of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks"
AGENT = ROOT / "examples" / "hello-agent"

from tests.fakes.anthropic_api import FakeAnthropic, text  # noqa: E402
from tests.support.processes import pids_with_env  # noqa: E402
from tests.support.server import AshServer  # noqa: E402

__all__ = ["AGENT", "FakeAnthropic", "pids_with_env", "text"]

NS_PER_MS = 1_000_000


# -- Numbers --------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """n, p50, p95, p99, min, max and mean of `values` (empty: n=0 only)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "p99": round(percentile(values, 99), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "mean": round(statistics.fmean(values), digits),
    }


def ms(ns: int) -> float:
    return ns / NS_PER_MS


# -- The machine and the results ------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def mem_available_mib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(isolation: str | None = None, limits: str | None = None) -> dict[str, Any]:
    """Where the numbers come from. `isolation`/`limits` as the server's /health reports them."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "claude_agent_sdk": _version("claude-agent-sdk"),
        "isolation": isolation,
        "limits": limits,
        "load_average": load_average(),
    }


def write_result(name: str, payload: dict[str, Any], *, quick: bool) -> Path:
    """docs/benchmarks/<name>.json (a --quick run writes <name>.quick.json, so a smoke run never replaces results)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    document = {
        "benchmark": name,
        "quick": quick,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **payload,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    return out


def print_table(title: str, rows: Sequence[tuple[str, dict[str, float]]], unit: str = "ms") -> None:
    """One row per measurement: n, p50, p95, p99 (in `unit`)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"\n{title}")
        for name, stats in rows:
            if stats.get("n"):
                print(
                    f"  {name:44s} p50 {stats['p50']:10.3f}  p95 {stats['p95']:10.3f}  p99 {stats['p99']:10.3f} "
                    f"{unit} (n={stats['n']})"
                )
        return
    table = Table(title=title, title_justify="left")
    table.add_column("measurement", no_wrap=True)
    for column in ("n", f"p50 {unit}", f"p95 {unit}", f"p99 {unit}"):
        table.add_column(column, justify="right")
    for name, stats in rows:
        if stats.get("n"):
            table.add_row(name, str(stats["n"]), f"{stats['p50']:.3f}", f"{stats['p95']:.3f}", f"{stats['p99']:.3f}")
    Console(width=140).print(table)


def arguments(description: str, runs: int, flags: dict[str, str] | None = None) -> argparse.Namespace:
    """--quick, --runs and the benchmark's own on/off `flags` ({"--postgres": "help"})."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (results go to *.quick.json)")
    parser.add_argument("--runs", type=int, default=None, help=f"repetitions (default {runs}, fewer with --quick)")
    for flag, text_ in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=text_)
    return parser.parse_args()


# -- A raw HTTP client ----------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_ns: int
    headers_ns: int
    end_ns: int
    # SSE: (arrival, event name, data) in order.
    events: list[tuple[int, str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def elapsed_ms(self) -> float:
        return ms(self.end_ns - self.sent_ns)

    def first(self, name: str) -> int | None:
        """When the first event called `name` arrived."""
        return next((t for t, event, _ in self.events if event == name), None)


class RawClient:
    """HTTP/1.1 over one keep-alive TCP connection, parsed by hand: it adds microseconds to what it measures,
    where httpx's sync client adds ~1.5 ms (shared/notes/performance.md)."""

    # uvicorn closes keep-alive connections idle for 5 s; reconnect before that rather than race it.
    IDLE_S = 4.0

    def __init__(self, url: str, token: str = "", *, unix_socket: Path | None = None) -> None:
        """`unix_socket`: connect there instead of to the URL's host and port (the URL names the Host header)."""
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.unix_socket = unix_socket
        self._head = f"Host: {self.host}:{self.port}\r\n"
        if token:
            self._head += f"Authorization: Bearer {token}\r\n"
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._used = 0.0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _connection(self) -> socket.socket:
        if self._sock is not None and time.monotonic() - self._used > self.IDLE_S:
            self.close()
        if self._sock is None:
            if self.unix_socket is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.unix_socket))
            else:
                sock = socket.create_connection((self.host, self.port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._buffer.clear()
        return self._sock

    def _fill(self) -> bool:
        assert self._sock is not None
        data = self._sock.recv(262144)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buffer += data
        return True

    def _rest(self) -> bytes:
        """A body without length or chunks: everything up to the close."""
        with contextlib.suppress(ConnectionError):
            while self._fill():
                pass
        data = bytes(self._buffer)
        self._buffer.clear()
        self.close()
        return data

    def _line(self) -> bytes:
        while (at := self._buffer.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self._buffer[:at])
        del self._buffer[: at + 2]
        return line

    def _exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        on_event: Callable[[int, str, str], None] | None = None,
    ) -> RawResponse:
        """Send one request and read its whole response; SSE events are parsed and timed as their bytes arrive."""
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\n{self._head}"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        sock = self._connection()
        sent = time.monotonic_ns()
        sock.sendall(head.encode() + payload)
        status = int(self._line().split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        headers_at = time.monotonic_ns()
        response = RawResponse(status, headers, b"", sent, headers_at, headers_at)
        if headers.get("transfer-encoding") == "chunked":
            pending = bytearray()
            body_parts: list[bytes] = []
            sse = headers.get("content-type", "").startswith("text/event-stream")
            while (size := int(self._line().split(b";")[0], 16)) > 0:
                chunk = self._exact(size)
                self._exact(2)
                arrived = time.monotonic_ns()
                if not sse:
                    body_parts.append(chunk)
                    continue
                pending += chunk
                while (end := pending.find(b"\n\n")) >= 0:
                    block = bytes(pending[:end]).decode()
                    del pending[: end + 2]
                    name, data = "message", []
                    for field_line in block.split("\n"):
                        if field_line.startswith("event:"):
                            name = field_line[6:].strip()
                        elif field_line.startswith("data:"):
                            data.append(field_line[5:].lstrip(" "))
                    if not data and not block.startswith("event:"):
                        continue  # a comment (keepalive)
                    event = (arrived, name, "\n".join(data))
                    response.events.append(event)
                    if on_event is not None:
                        on_event(*event)
            while self._line():  # trailers, then the blank line
                pass
            response.body = b"".join(body_parts)
        elif "content-length" in headers:
            response.body = self._exact(int(headers["content-length"]))
        else:
            response.body = self._rest()
        response.end_ns = time.monotonic_ns()
        self._used = time.monotonic()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def ok(self, method: str, path: str, body: Any = None) -> RawResponse:
        response = self.request(method, path, body)
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {response.body[:500]!r}")
        return response

    def message(self, session_id: str, content: str, *, partial: bool = True) -> RawResponse:
        """One turn: POST the message and read its SSE stream to `done`."""
        body = {"content": content, "includePartialMessages": partial}
        response = self.request("POST", f"/api/sessions/{session_id}/messages", body)
        if response.status != 200:
            raise RuntimeError(f"message to {session_id}: {response.status} {response.body[:500]!r}")
        errors = [data for _, name, data in response.events if name == "error"]
        if errors or not response.events or response.events[-1][1] != "done":
            raise RuntimeError(f"turn of {session_id} failed: {errors or response.events[-3:]}")
        return response


# -- The server -----------------------------------------------------------------------------------------------

# The bridge with a few timestamps: it runs unchanged (ash_bridge.main), with Bridge.send, Bridge._run_turn and
# SdkDriver.connect wrapped to note CLOCK_MONOTONIC when the process got going, when it called the SDK's connect
# (the CLI start) and was connected, when a turn's query arrived and when each SDK message went to the server.
# The notes go to stderr (the sandbox log, /api/sessions/{id}/logs) after the turn's `done`, off the measured path.
# Cost inside a turn: one monotonic_ns() and a list append per message (well under a microsecond).
PROBE_SOURCE = r"""
import json, sys, time
_started = time.monotonic_ns()
from ash_bridge import driver as _driver, main as _main
def _note(kind, **fields):
    print("ash-bench " + json.dumps({"kind": kind, **fields}), file=sys.stderr, flush=True)
_imported = time.monotonic_ns()
_connect = _driver.SdkDriver.connect
async def connect(self, *args, **kwargs):
    called = time.monotonic_ns()
    await _connect(self, *args, **kwargs)
    _note("start", started=_started, imported=_imported, connect=called, connected=time.monotonic_ns())
_driver.SdkDriver.connect = connect
_sent = []
_send = _main.Bridge.send
async def send(self, event):
    if event.event == "message":
        _sent.append(time.monotonic_ns())
    await _send(self, event)
_main.Bridge.send = send
_run_turn = _main.Bridge._run_turn
async def run_turn(self, command):
    _sent.clear()
    query = time.monotonic_ns()
    await _run_turn(self, command)
    _note("turn", id=command.id, query=query, messages=list(_sent))
_main.Bridge._run_turn = run_turn
_main.main()
"""


def probe_entry() -> str:
    """ASH_BRIDGE_ENTRY for the instrumented bridge (the interpreter and flags the server uses by default)."""
    return shlex.join([sys.executable, "-I", "-c", PROBE_SOURCE])


def probe_notes(client: RawClient, session_id: str, kind: str) -> list[dict[str, Any]]:
    """What the instrumented bridge of the session's current sandbox noted, of one kind, oldest first."""
    logs = client.ok("GET", f"/api/sessions/{session_id}/logs").json()["logs"]
    notes = []
    for entry in logs:
        line = entry["text"]
        if line.startswith("ash-bench "):
            note = json.loads(line[len("ash-bench ") :])
            if note["kind"] == kind:
                notes.append(note)
    return notes


def wait_for_notes(client: RawClient, session_id: str, kind: str, count: int, timeout_s: float = 10) -> list[Any]:
    """The notes, once at least `count` have reached the sandbox log (they are printed after the turn's done)."""
    deadline = time.monotonic() + timeout_s
    while True:
        notes = probe_notes(client, session_id, kind)
        if len(notes) >= count or time.monotonic() > deadline:
            return notes
        time.sleep(0.01)


@contextlib.contextmanager
def ash_server(fake: FakeAnthropic, env: dict[str, str] | None = None) -> Iterator[tuple[AshServer, RawClient]]:
    """A real server (uvicorn + uvloop, as in production) on the fake model, with a raw client. The per-key rate
    limits are off: a benchmark sends more messages a minute than the default allows one key."""
    # A benchmark measures the server, not its abuse limits: none of them throttles it.
    limits = {
        "ASH_RATE_LIMIT_MESSAGES_PER_MINUTE": "0",
        "ASH_RATE_LIMIT_SESSIONS_PER_MINUTE": "0",
        "ASH_GATEWAY_CALLS_PER_MINUTE": "0",
    }
    server = AshServer(fake.url, env={**limits, **(env or {})}).start(timeout=120)
    try:
        with RawClient(server.url, server.api_key) as client:
            yield server, client
    finally:
        server.cleanup()


def deploy(client: RawClient, name: str, *, warm_pool: int = 0, path: Path = AGENT) -> None:
    client.ok("POST", "/api/agents", {"name": name, "path": str(path)})
    if warm_pool:
        client.ok("PATCH", f"/api/agents/{name}/config", {"warmPoolSize": warm_pool})


def health(client: RawClient) -> dict[str, Any]:
    result: dict[str, Any] = client.ok("GET", "/health").json()
    return result


def database_counts(client: RawClient) -> dict[str, float]:
    """The server's SQL statements and commits so far (its /metrics: ash_db_statements_total, ash_db_commits_total)."""
    text = client.ok("GET", "/metrics").body.decode()
    found = dict(re.findall(r"^ash_db_(statements|commits)_total (\S+)$", text, flags=re.MULTILINE))
    return {name: float(value) for name, value in found.items()}


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_pool_settled(client: RawClient, warm: int, timeout_s: float = 180) -> None:
    """Until the warm pool holds `warm` sandboxes and none is starting: no measurement shares the CPU with a
    sandbox start it did not cause."""

    def settled() -> bool:
        pool = health(client)["pool"]
        return bool(pool["warm"] >= warm and pool["warming"] == 0)

    wait_until(settled, timeout_s, f"{warm} warm sandbox(es)")


def quiesce(seconds: float = 0.5) -> None:
    """Let background work (snapshots, pool rows, a CLI's after-turn housekeeping) finish before the next sample."""
    time.sleep(seconds)


# -- Processes and memory -------------------------------------------------------------------------------------


def process_memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; PSS shares pages between the processes that map them."""
    rss = pss = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def sandbox_memory_mib(sandbox_ids: Sequence[str]) -> dict[str, float]:
    """Memory of the process trees of these sandboxes (every process with its ASH_SANDBOX_ID), summed: RSS (what
    `ps` shows, shared pages counted in each) and PSS (shared pages split: what they cost together)."""
    wanted = {f"ASH_SANDBOX_ID={s}".encode() for s in sandbox_ids}
    rss = pss = processes = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if environ & wanted:
            one_rss, one_pss = process_memory_kib(int(proc.name))
            rss, pss, processes = rss + one_rss, pss + one_pss, processes + 1
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1), "processes": processes}


def interpreter_start_ms(runs: int = 10) -> dict[str, float]:
    """How long `python -I` takes to run its first line here: the part of a bridge start that is Python's."""
    samples = []
    for _ in range(runs):
        before = time.monotonic_ns()
        out = subprocess.run(
            [sys.executable, "-I", "-c", "import time; print(time.monotonic_ns())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append(ms(int(out) - before))
    return summary(samples)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time these processes have used so far (10 ms resolution: compare over many turns)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def sandbox_pids(sandbox_id: str) -> list[int]:
    return pids_with_env("ASH_SANDBOX_ID", sandbox_id)
