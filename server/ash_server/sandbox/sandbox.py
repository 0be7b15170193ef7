"""A running sandbox: its process, its bridge connection, its output log.

The server listens on a per-sandbox Unix socket and the bridge connects to it. Events from the bridge are routed
by request id into a bounded queue per request: when the consumer falls behind, the reader stops reading, the
socket fills, and the bridge's `drain()` holds the SDK back. Events for a request nobody waits for any more (an
aborted turn) are dropped, so they can never leak into the next turn.

A sandbox with a `SandboxGuard` is watched against its limits (memory, processes, disk): the first breach stops
the whole sandbox and becomes its exit reason, which ends a running turn with an error that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ash_bridge import protocol
from ash_bridge.protocol import Command, Event

from .. import jsoncodec
from ..errors import BridgeError, SandboxError
from .guard import POLL_INTERVAL_S, Breach, SandboxGuard
from .launcher import LaunchSpec, SandboxProcess

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 256
LOG_LINES = 2000


class Sandbox:
    def __init__(self, sandbox_id: str, session_id: str, directory: Path) -> None:
        self.id = sandbox_id
        self.session_id = session_id
        self.directory = directory
        self.process: SandboxProcess | None = None
        self.logs: deque[tuple[int, str, str]] = deque(maxlen=LOG_LINES)
        self._log_index = 0
        self._server: asyncio.AbstractServer | None = None
        self._connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )
        self._writer: asyncio.StreamWriter | None = None
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._exited = asyncio.Event()
        self.exit_reason: str | None = None
        self.last_sent: float | None = None  # perf_counter() of the last command written (ASH_DEBUG_TIMING)
        # The limit it broke, if that is why it ended: oom, pids or disk (guard.py), the cause /metrics counts.
        self.exit_cause: str | None = None
        self._waiters_failed = False
        self.spec: LaunchSpec | None = None
        self.guard: SandboxGuard | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "bridge.sock"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def wait_exited(self) -> None:
        await self._exited.wait()

    @property
    def alive(self) -> bool:
        return not self._exited.is_set()

    async def listen(self, owner: tuple[int, int] | None) -> None:
        path = self.socket_path
        if len(os.fsencode(path)) >= 108:
            raise SandboxError(
                f"socket path {path} is too long for a Unix socket; use a shorter ASH_DATA_DIR",
                sandbox_id=self.id,
            )

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._connected.done():
                writer.close()  # exactly one bridge per sandbox
                return
            self._connected.set_result((reader, writer))

        self._server = await asyncio.start_unix_server(on_connect, path=str(path), limit=protocol.MAX_FRAME_BYTES)
        os.chmod(path, 0o600)
        if owner is not None:
            os.chown(path, *owner)

    def attach(
        self, process: SandboxProcess, spec: LaunchSpec | None = None, guard: SandboxGuard | None = None
    ) -> None:
        self.process = process
        self.spec = spec
        self.guard = guard
        self._tasks.append(asyncio.create_task(self._pump_output()))
        self._tasks.append(asyncio.create_task(self._watch_exit()))
        if guard is not None:
            self._tasks.append(asyncio.create_task(self._watch_limits(guard)))

    async def wait_ready(self, limit_s: float) -> None:
        """Wait for the bridge to connect and report `ready` (its SDK client is connected by then)."""
        exited = asyncio.ensure_future(self._exited.wait())
        try:
            async with asyncio.timeout(limit_s):
                pending: list[asyncio.Future[Any]] = [self._connected, exited]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not self._connected.done():
                    raise SandboxError(f"sandbox failed to start: {self.exit_reason}{self._tail()}", sandbox_id=self.id)
                reader, writer = self._connected.result()
                self._writer = writer
                line = await reader.readline()
            event = protocol.decode_event(line, jsoncodec.loads) if line else None
            if event is None or event.event != "ready":
                detail = event.error if event is not None and event.error else self.exit_reason or "bridge closed"
                raise SandboxError(f"sandbox failed to start: {detail}{self._tail()}", sandbox_id=self.id)
        except TimeoutError as exc:
            raise SandboxError(
                f"sandbox did not become ready within {limit_s:.0f}s{self._tail()}", sandbox_id=self.id
            ) from exc
        except protocol.ProtocolError as exc:
            raise SandboxError(f"sandbox failed to start: {exc.reason}{self._tail()}", sandbox_id=self.id) from exc
        finally:
            exited.cancel()
        self._tasks.append(asyncio.create_task(self._read_events(reader)))

    def _tail(self) -> str:
        lines = [text for _, _, text in list(self.logs)[-15:]]
        return ("\n" + "\n".join(lines)) if lines else ""

    async def send(self, command: Command) -> None:
        if self._writer is None or not self.alive:
            raise BridgeError("sandbox is not running", sandbox_id=self.id)
        try:
            self._writer.write(protocol.encode(command))
            self.last_sent = time.perf_counter()
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise BridgeError(f"lost the bridge: {exc}", sandbox_id=self.id) from exc

    async def request(self, command: Command) -> AsyncIterator[Event]:
        """Send a command and yield its events up to and including `done`."""
        queue: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._queues[command.id] = queue
        used_tools = False
        try:
            await self.send(command)
            while True:
                event = await queue.get()
                used_tools = used_tools or _uses_tools(event)
                if event.event == "done" and self.guard is not None and self.exit_reason is None:
                    # What the turn did may have broken a limit a moment ago (an OOM-killed tool, a big file):
                    # say so in this turn rather than in nobody's. Only a turn that ran tools measures the disk
                    # now (a walk of the workspace before `done`); without tools it grew by its transcript only,
                    # which the disk's own schedule measures.
                    found = await self.guard.breach(eager=used_tools)
                    if found is not None:
                        self.breach(found)
                        yield Event(event="error", id=command.id, error=found.reason, code="limit_exceeded")
                yield event
                if event.event == "done":
                    return
        finally:
            self._queues.pop(command.id, None)

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self._record("error", "bridge sent an oversized frame; closing the sandbox")
                    break
                if not line:
                    break
                try:
                    event = protocol.decode_event(line, jsoncodec.loads)
                except protocol.ProtocolError as exc:
                    self._record("error", f"bridge protocol error: {exc.reason}")
                    continue
                queue = self._queues.get(event.id)
                if queue is not None:
                    await queue.put(event)
                elif event.event == "error":
                    self._record("error", f"bridge: {event.error}")
        except ConnectionError:
            pass
        if self.exit_reason is None and self.guard is not None:
            # The kernel may have killed the whole sandbox for a limit (gVisor's sentry is one process to the OOM
            # killer): its turn hears the limit, not a lost connection.
            found = self.guard.killed()
            if found is not None:
                self.breach(found)
        await self._fail_waiters(self.exit_reason or "the bridge closed its connection")

    async def _fail_waiters(self, reason: str) -> None:
        if self._waiters_failed:
            return
        self._waiters_failed = True
        for request_id, queue in list(self._queues.items()):
            await queue.put(Event(event="error", id=request_id, error=f"sandbox ended: {reason}", code="cli_exited"))
            await queue.put(Event(event="done", id=request_id))

    async def _pump_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            self._record("info", raw.decode(errors="replace").rstrip("\n"))

    def _record(self, level: str, text: str) -> None:
        self._log_index += 1
        self.logs.append((self._log_index, level, text))
        log.debug("sandbox %s: %s", self.id, text)

    def log_entries(self, after: int = 0) -> list[dict[str, object]]:
        return [
            {"index": i, "level": level, "text": text, "ts": datetime.now(UTC).isoformat()}
            for i, level, text in self.logs
            if i > after
        ]

    async def _watch_limits(self, guard: SandboxGuard) -> None:
        while self.alive:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                found = await guard.breach()
            except Exception:
                log.exception("sandbox %s: checking its limits failed", self.id)
                continue
            if found is not None:
                self.breach(found)
                return

    def breach(self, found: Breach) -> None:
        """The sandbox broke a limit: it stops, all of it, and the reason is what its turn and its log report."""
        if not self.alive or self.exit_reason is not None:
            return
        self.exit_reason, self.exit_cause = found.reason, found.cause
        self._record("error", found.reason)
        log.warning("sandbox %s of session %s: %s", self.id, self.session_id, found.reason)
        self.kill()

    async def _watch_exit(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        if self.exit_reason is None and self.guard is not None:
            # Killed by the kernel for a limit (the OOM killer may pick the bridge or the CLI itself).
            found = self.guard.killed()
            if found is not None:
                self.exit_reason, self.exit_cause = found.reason, found.cause
        if self.exit_reason is None:
            if code < 0:
                self.exit_reason = f"killed by signal {signal.Signals(-code).name}"
            else:
                self.exit_reason = f"exited with code {code}"
        self._exited.set()
        await self._fail_waiters(self.exit_reason)

    async def stop(self, grace: float = 5.0) -> None:
        """Ask the bridge to shut down, then kill whatever is left of the sandbox's process group."""
        if self.alive and self._writer is not None:
            with contextlib.suppress(Exception):
                await self.send(Command(cmd="shutdown", id="shutdown"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exited.wait(), timeout=grace)
        self.exit_reason = self.exit_reason or "stopped"
        self.kill()
        if self.process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exited.wait(), timeout=grace)
        await self.close()

    def kill(self) -> None:
        if self.process is not None:
            kill_group(self.process.pid)
        if self.guard is not None:
            self.guard.kill()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _uses_tools(event: Event) -> bool:
    """An assistant message of the SDK that calls a tool."""
    message = event.message
    if message is None or message.get("type") != "assistant":
        return False
    content = (message.get("message") or {}).get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
