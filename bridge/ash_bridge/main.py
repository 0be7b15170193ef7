"""The bridge process: connects to the server's socket, keeps the SDK client up, runs one turn at a time."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import traceback
from types import FrameType
from typing import Any

from . import protocol
from .driver import SdkDriver, config_from_env
from .egress import start_forwarder
from .protocol import Command, ErrorCode, Event


class Bridge:
    """Commands are read in one task; turns run one at a time in the task that owns the SDK client. What the CLI
    does on its own (a turn after a background task ended) goes to the server's `listen` request, if it made one."""

    def __init__(self, driver: SdkDriver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._driver = driver
        self._reader = reader
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._queue: asyncio.Queue[Command | None] = asyncio.Queue()
        self._turn_id: str | None = None
        self._listener: str | None = None
        self._dropped = False

    async def send(self, event: Event) -> None:
        async with self._write_lock:
            self._writer.write(protocol.encode(event))
            # drain() is the backpressure: a server that stops reading stops the turn from racing ahead.
            await self._writer.drain()

    async def background(self, message: dict[str, Any]) -> None:
        """An SDK message of a turn the CLI runs on its own, to the server's `listen` request (unchanged)."""
        if self._listener is None:
            if not self._dropped:
                self._dropped = True
                print("ash-bridge: the CLI ran a turn of its own and nobody listens: dropped", file=sys.stderr)
            return
        await self.send(Event(event="background", id=self._listener, message=message))

    async def _error(self, request_id: str, message: str, code: ErrorCode) -> None:
        await self.send(Event(event="error", id=request_id, error=message, code=code))

    async def serve(self) -> None:
        await self.send(Event(event="ready", id="", pid=os.getpid()))
        reader = asyncio.create_task(self._read_commands())
        try:
            while (command := await self._queue.get()) is not None:
                await self._run_turn(command)
                self._turn_id = None
        finally:
            reader.cancel()

    async def _read_commands(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break  # the server went away; --die-with-parent or the server's kill ends us anyway
                try:
                    command = protocol.decode_command(line)
                except protocol.ProtocolError as exc:
                    await self._error("", exc.reason, "bad_command")
                    continue
                if command.cmd == "shutdown":
                    await self._interrupt(self._turn_id)
                    break
                if command.cmd == "interrupt":
                    await self._interrupt(command.id)
                elif command.cmd == "listen":
                    self._listener = command.id
                elif self._turn_id is not None:
                    await self._error(command.id, f"turn {self._turn_id} is still running", "busy")
                    await self.send(Event(event="done", id=command.id, sdk_session_id=self._driver.sdk_session_id))
                else:
                    self._turn_id = command.id
                    self._queue.put_nowait(command)
        finally:
            self._queue.put_nowait(None)

    async def _run_turn(self, command: Command) -> None:
        assert command.prompt is not None
        rid = command.id
        traceparent = command.options.get("traceparent")
        if isinstance(traceparent, str):
            # One line per turn in the sandbox log, so its output can be matched with the server's trace.
            print(f"ash-bridge: turn {rid} traceparent={traceparent}", file=sys.stderr, flush=True)
        try:
            await self._driver.prepare(command.options)
            async for message in self._driver.turn(command.prompt):
                await self.send(Event(event="message", id=rid, message=message))
        except Exception as exc:  # the SDK raises plain Exceptions for CLI-reported errors
            traceback.print_exc(file=sys.stderr)
            await self._error(rid, str(exc) or type(exc).__name__, "sdk_error")
        await self.send(Event(event="done", id=rid, sdk_session_id=self._driver.sdk_session_id))

    async def _interrupt(self, request_id: str | None) -> None:
        if request_id is None or request_id != self._turn_id:
            return  # nothing of that request is running: interrupting is idempotent
        with contextlib.suppress(Exception):
            await self._driver.interrupt()


async def run() -> int:
    config = config_from_env()
    socket_path = os.environ.get("ASH_BRIDGE_SOCKET")
    if not socket_path:
        print("ash-bridge: ASH_BRIDGE_SOCKET is not set", file=sys.stderr)
        return 2
    reader, writer = await asyncio.open_unix_connection(socket_path, limit=protocol.MAX_FRAME_BYTES)
    egress_socket = os.environ.get("ASH_EGRESS_SOCKET")
    # Before the CLI starts, so it (and everything the agent runs) inherits the proxy variables.
    egress_port = int(os.environ.get("ASH_EGRESS_PORT") or 0)
    forwarder = await start_forwarder(egress_socket, egress_port) if egress_socket else None
    driver = SdkDriver(config)
    bridge = Bridge(driver, reader, writer)
    try:
        await driver.connect(bridge.background)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        writer.write(protocol.encode(Event(event="error", id="", error=f"SDK start failed: {exc}", code="cli_exited")))
        await writer.drain()
        return 1
    try:
        await bridge.serve()
    finally:
        with contextlib.suppress(Exception):
            await driver.disconnect()
        writer.close()
        if forwarder is not None:
            forwarder.close()
    return 0


def _kill_sandbox(_signum: int, _frame: FrameType | None) -> None:
    # The bridge leads the sandbox's process group: take the CLI and anything the agent started down with it.
    os.killpg(0, signal.SIGKILL)


def die_with_server() -> None:
    """Make the sandbox die with the server, even when the server is killed with SIGKILL.

    The kernel sends SIGTERM to the bridge when its parent dies (PR_SET_PDEATHSIG); the handler then kills the
    whole process group. Under bubblewrap, --die-with-parent does the same one level up.
    """
    if not sys.platform.startswith("linux"):
        return
    signal.signal(signal.SIGTERM, _kill_sandbox)
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    expected_parent = os.environ.get("ASH_SERVER_PID")
    if expected_parent and str(os.getppid()) != expected_parent:
        _kill_sandbox(signal.SIGTERM, None)  # the server died before we could arm the signal


def main() -> None:
    die_with_server()
    try:
        import uvloop
    except ImportError:  # uvloop is an optimisation only
        sys.exit(asyncio.run(run()))
    sys.exit(uvloop.run(run()))
