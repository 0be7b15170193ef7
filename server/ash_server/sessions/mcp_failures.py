"""MCP servers that failed to start, said out loud: the CLI's init message only marks them `failed`, so the first
time a sandbox reports one, its stderr tail (kept by the bridge under the sandbox's HOME) becomes an `error` event of
the turn and a line in the server log. The tail is read by a command inside the sandbox, as the sandbox user: the
agent owns that folder, and a link it planted there must not make the server read anything of its own."""

from __future__ import annotations

import shlex
import weakref
from typing import Any

from ash_bridge.protocol import MCP_LOG_DIR, mcp_log_name

from ..errors import AshError
from ..sandbox.manager import SandboxManager
from ..sandbox.sandbox import Sandbox

TAIL_BYTES = 1_500
READ_TIMEOUT_S = 5.0
CODE = "mcp_server_failed"


def failed_servers(message: dict[str, Any]) -> list[str]:
    """The names of the MCP servers an SDK init message marks failed."""
    if message.get("type") != "system" or message.get("subtype") != "init":
        return []
    servers = message.get("mcp_servers")
    if not isinstance(servers, list):
        return []
    return [
        s["name"]
        for s in servers
        if isinstance(s, dict) and s.get("status") == "failed" and isinstance(s.get("name"), str)
    ]


class McpFailures:
    def __init__(self, sandboxes: SandboxManager) -> None:
        self._sandboxes = sandboxes
        self._reported: weakref.WeakKeyDictionary[Sandbox, set[str]] = weakref.WeakKeyDictionary()

    async def explain(self, sandbox: Sandbox, names: list[str]) -> list[str]:
        """What to say of each failed server this sandbox has not reported yet."""
        reported = self._reported.setdefault(sandbox, set())
        said = []
        for name in names:
            if name in reported:
                continue
            reported.add(name)
            tail = await self._stderr_tail(sandbox, name)
            said.append(
                f"MCP server {name!r} failed to start: {tail}"
                if tail
                else f"MCP server {name!r} failed to start (it wrote nothing to stderr)"
            )
        return said

    async def _stderr_tail(self, sandbox: Sandbox, name: str) -> str:
        home = sandbox.spec.env.get("HOME") if sandbox.spec is not None else None
        if not home:
            return ""
        path = f"{home}/{MCP_LOG_DIR}/{mcp_log_name(name)}.log"
        try:
            result = await self._sandboxes.exec(
                sandbox, f"tail -c {TAIL_BYTES} {shlex.quote(path)} 2>/dev/null", READ_TIMEOUT_S
            )
        except AshError:
            return ""
        return result.stdout.strip()
