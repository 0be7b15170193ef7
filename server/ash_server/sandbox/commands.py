"""One command run to completion with a timeout and capped output (what POST /api/sessions/{id}/exec runs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .sandbox import kill_group

MAX_OUTPUT_BYTES = 1024 * 1024  # per stream
# After the command exits, how long its output may still take to arrive. A background process it left running
# can hold the pipes open for ever; the result does not wait for it.
DRAIN_S = 1.0
TIMED_OUT = 124  # what timeout(1) answers


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool


def shell_argv(command: str) -> list[str]:
    """bash -c, like the agent's Bash tool (sh where there is no bash)."""
    return ["/bin/bash" if Path("/bin/bash").exists() else "/bin/sh", "-c", command]


class _Capture:
    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.truncated = False

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.truncated = True
            if room > 0:
                self.data += chunk[:room]

    def text(self) -> str:
        return self.data.decode(errors="replace")


async def run_command(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path, timeout_s: float, max_output: int = MAX_OUTPUT_BYTES
) -> CommandResult:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # a process group of its own: a timeout kills all of it
        close_fds=True,
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = _Capture(max_output), _Capture(max_output)
    readers = [asyncio.create_task(out.read(process.stdout)), asyncio.create_task(err.read(process.stderr))]
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            code = await process.wait()
    except TimeoutError:
        timed_out = True
        kill_group(process.pid)
        await process.wait()
        code = TIMED_OUT
    _, pending = await asyncio.wait(readers, timeout=DRAIN_S)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stderr = err.text()
    if timed_out:
        stderr += f"\n[ash] the command did not finish within {timeout_s:g} s and was killed\n"
    return CommandResult(
        exit_code=code if code >= 0 else 128 - code,
        stdout=out.text(),
        stderr=stderr,
        timed_out=timed_out,
        truncated=out.truncated or err.truncated,
    )
