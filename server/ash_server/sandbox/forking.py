"""Sandboxes whose bridge is forked from the bridge template (ash_bridge/template.py) instead of started, so a
sandbox start pays neither an interpreter start nor the SDK's imports (ASH_BRIDGE_START=fork).

bubblewrap still builds the sandbox, exactly as for a started bridge (bwrap.py: the same namespaces, mounts,
user and environment), but runs a stub (`tail -f /dev/null`) in it; the template's child joins the stub's namespaces
and forks the bridge there, which the server then puts in the sandbox's cgroups before it runs anything. The
bridge and bubblewrap write to one log pipe. When the bridge ends the stub is killed, so the sandbox ends with
it; when the sandbox is killed (limits, stop, the server's death) its PID namespace takes the bridge along.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from .bwrap import HOST_ONLY_ENV, BwrapLauncher
from .environment import DEFAULT_PATH
from .launcher import LaunchSpec, SandboxProcess, drop_privileges
from .limits import Confinement
from .sandbox import kill_group

# The sandbox's stub, which blocks until it is killed: in /usr, which every sandbox has read-only; the template
# recognises it by this argv[0]. (Not `sleep infinity`: an agent's own sleeps would be hard to tell from it.)
STUB = shutil.which("tail", path="/usr/bin:/bin") or "/usr/bin/tail"
STUB_ARGS = ["-f", "/dev/null"]
log = logging.getLogger(__name__)
TEMPLATE_START_S = 60.0
SPAWN_S = 30.0
# Forks failing one after the other before the server gives up on the template.
FAILURES_BEFORE_EXEC = 3


def forkable_entry(bridge_entry: str | None) -> str | None:
    """What a forked bridge runs for ASH_BRIDGE_ENTRY: "" (the bridge's own main) when it is unset, the source of a
    `<this interpreter> -I -c <source>` entry (an instrumented bridge, as bench/ runs), None for any other command
    (a program of its own: started, not forked)."""
    if not bridge_entry:
        return ""
    argv = shlex.split(bridge_entry)
    if len(argv) == 4 and argv[0] == sys.executable and argv[1:3] == ["-I", "-c"]:
        return argv[3]
    return None


class BridgeTemplate:
    """The template process, started once per server as the sandbox user, and its socket."""

    def __init__(self, socket_path: Path, ids: tuple[int, int] | None) -> None:
        self.socket_path = socket_path
        self._ids = ids
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)  # the server's alone: a sandbox (the template's uid) cannot connect
            listener.listen(64)
            self._process = await asyncio.create_subprocess_exec(
                *drop_privileges(self._ids),
                sys.executable,
                "-I",
                "-m",
                "ash_bridge.template",
                str(listener.fileno()),
                str(os.getuid()),
                env={"PATH": DEFAULT_PATH},
                cwd="/",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                pass_fds=[listener.fileno()],
                start_new_session=True,
            )
        finally:
            listener.close()
        assert self._process.stdout is not None
        try:
            async with asyncio.timeout(TEMPLATE_START_S):
                line = await self._process.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self.close()
            raise SandboxError("the bridge template did not start (ASH_BRIDGE_START=fork)")

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()

    async def spawn(self, spec: LaunchSpec, bwrap_pid: int, log_fd: int, *, source: str | None) -> ForkedBridge:
        """Fork a bridge into the sandbox bwrap `bwrap_pid` runs, under `spec`'s limits; returns once it runs."""
        assert spec.confinement is not None
        request = {
            "target": str(bwrap_pid),
            "stub": STUB,
            "cwd": str(spec.workspace),
            "env": {k: v for k, v in spec.env.items() if k not in HOST_ONLY_ENV},
            "fsize": spec.file_size_bytes,
            "cgroups": [str(path) for path in spec.confinement.procs_files],
            "source": source,
        }
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, str(self.socket_path))
            # One small message: the socket buffer takes it at once.
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [log_fd])
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except OSError as exc:
            sock.close()
            raise SandboxError(f"the bridge template cannot be reached: {exc}", sandbox_id=spec.sandbox_id) from exc
        try:
            async with asyncio.timeout(SPAWN_S):
                answer = json.loads(await reader.readline() or b"{}")
            if "pid" not in answer:
                raise SandboxError(
                    f"the bridge could not be forked: {answer.get('error', 'the template closed the connection')}",
                    sandbox_id=spec.sandbox_id,
                )
            pid = int(answer["pid"])
            # The template's child joined the cgroups itself (cgroup v1, whose files are given to the sandbox
            # user), its bridge with it; where it could not (v2: a move needs the common ancestor), the server does.
            if not answer.get("joined"):
                try:
                    spec.confinement.join(pid)
                except OSError as exc:
                    raise SandboxError(
                        f"the forked bridge cannot join the sandbox's cgroups: {exc} (and the template's child: "
                        f"{answer.get('why_not') or 'not tried'})",
                        sandbox_id=spec.sandbox_id,
                    ) from exc
            writer.write(b"go\n")
            await writer.drain()
        except BaseException as exc:
            writer.close()  # without `go` the bridge runs nothing and exits
            if isinstance(exc, (TimeoutError, OSError, ValueError)):
                raise SandboxError(f"the bridge could not be forked: {exc}", sandbox_id=spec.sandbox_id) from exc
            raise
        return ForkedBridge(pid, reader, writer)


class ForkedBridge:
    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pid = pid  # as the host sees it
        self._reader = reader
        self._writer = writer

    async def wait(self) -> int:
        """The bridge's exit code (negative: the signal), once it has ended."""
        try:
            line = await self._reader.readline()
            answer: dict[str, Any] = json.loads(line) if line else {}
        except (OSError, ValueError):
            answer = {}
        finally:
            self._writer.close()
        code = answer.get("exit")
        return code if isinstance(code, int) else -9


class ForkedSandbox:
    """A sandbox's process as the server sees it (SandboxProcess): bubblewrap's pid and process group, the shared
    log, and the bridge's end (after which the sandbox's stub is killed and bubblewrap waited for)."""

    def __init__(self, bwrap: asyncio.subprocess.Process, bridge: ForkedBridge, output: asyncio.StreamReader) -> None:
        self._bwrap = bwrap
        self._bridge = bridge
        self._output = output
        self._code: int | None = None

    @property
    def pid(self) -> int:
        return self._bwrap.pid

    @property
    def stdout(self) -> asyncio.StreamReader:
        return self._output

    async def wait(self) -> int:
        if self._code is None:
            code = await self._bridge.wait()
            kill_group(self._bwrap.pid)
            await self._bwrap.wait()
            self._code = code
        return self._code


class ForkingBwrapLauncher(BwrapLauncher):
    """bubblewrap sandboxes with forked bridges (a limits backend that cannot take one gets a started bridge)."""

    def __init__(self, template: BridgeTemplate, *, source: str | None = None, bwrap: str | None = None) -> None:
        """`source`: Python the forked bridge runs instead of `ash_bridge.main.main()` (forkable_entry)."""
        super().__init__(bwrap)
        self.template = template
        self._source = source
        self.bridge_start = "fork"  # "exec" once forks kept failing: every sandbox then starts its own bridge
        self._failures = 0

    async def launch(self, spec: LaunchSpec) -> SandboxProcess:
        if spec.confinement is None or not spec.confinement.procs_files or self.bridge_start != "fork":
            return await super().launch(spec)  # no cgroups to join (rlimits apply at exec): a started bridge
        try:
            process = await self._launch_forked(spec, spec.confinement)
        except SandboxError as exc:
            # The sandbox starts its own bridge instead; a server whose sandboxes cannot take a forked bridge at
            # all (its cgroups refuse the move, the template died) stops trying after a few.
            self._failures += 1
            if self._failures >= FAILURES_BEFORE_EXEC:
                self.bridge_start = "exec"
            log.warning(
                "sandbox %s: forking its bridge failed (%s); it starts its own%s",
                spec.sandbox_id,
                exc.message,
                ", as every sandbox will from now on" if self.bridge_start == "exec" else "",
            )
            return await super().launch(spec)
        self._failures = 0
        return process

    async def _launch_forked(self, spec: LaunchSpec, confinement: Confinement) -> SandboxProcess:
        if spec.ids is not None:
            for procs in confinement.procs_files:
                try:
                    # So that the template's child can join them (cgroup v1): the file its user's, and the
                    # folders the server made on the way to it (its umask keeps them 0700) passable.
                    os.chown(procs, *spec.ids)
                    for folder in (procs.parent, procs.parent.parent):
                        os.chmod(folder, os.stat(folder).st_mode | stat.S_IXOTH)
                except OSError as exc:
                    log.info("sandbox %s: %s stays the server's (%s)", spec.sandbox_id, procs, exc.strerror)
        read_end, write_end = os.pipe()
        try:
            bwrap = await self.start_bwrap(replace(spec, argv=[STUB, *STUB_ARGS]), output=write_end)
            try:
                bridge = await self.template.spawn(spec, bwrap.pid, write_end, source=self._source)
            except BaseException:
                kill_group(bwrap.pid)
                await bwrap.wait()
                raise
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # bwrap and the bridge hold it now: the log ends when both have gone
        output = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(output), os.fdopen(read_end, "rb", buffering=0)
        )
        return ForkedSandbox(bwrap, bridge, output)
