"""Driving an agent through scripted Bash tool calls and reading what came back."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.processes import pids_with_env
from tests.support.server import AshServer
from tests.support.sse import events_of, turn_text

# The sandbox runtimes the hostile-agent suites run under (ASH_SANDBOX_RUNTIME): each module's server is started
# once per runtime.
RUNTIMES = ("bwrap", "gvisor")


def inside_commands(server: AshServer, sandbox_id: str) -> list[str]:
    """The command (name or line) of every process running inside a sandbox. bubblewrap's are host processes; gVisor's
    live in its own kernel, so runsc lists them (the host sees only runsc's own processes)."""
    if server.env.get("ASH_SANDBOX_RUNTIME") == "gvisor":
        state = server.data_dir / "run" / "gvisor" / "state"
        listed = subprocess.run(
            ["runsc", f"--root={state}", "ps", sandbox_id], capture_output=True, text=True, timeout=30
        )
        if listed.returncode != 0:
            return []  # no such container (any more)
        # UID PID PPID C TTY STIME TIME CMD: the command's name is the last column.
        return [line.split()[-1] for line in listed.stdout.splitlines()[1:] if line.strip()]
    found = []
    for pid in pids_with_env("ASH_SANDBOX_ID", sandbox_id):
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


@dataclass
class TurnResult:
    events: list[tuple[str, Any]]

    @property
    def tool_output(self) -> str:
        """The text of every tool result of the turn, joined."""
        parts = []
        for name, data in self.events:
            if name == "tool_result":
                content = data.get("content")
                if isinstance(content, list):
                    content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
                parts.append(str(content))
        return "\n".join(parts)

    @property
    def errors(self) -> list[str]:
        return [str(data.get("error")) for name, data in self.events if name == "error"]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def turn(client: httpx.Client, session_id: str, prompt: str) -> TurnResult:
    result = TurnResult(events_of(turn_text(client, session_id, prompt, until_done=False)))
    assert result.names[-1] == "done", result.names
    return result


def bash(model: FakeAnthropic, client: httpx.Client, session_id: str, prompt: str, command: str) -> TurnResult:
    """One turn in which the agent runs `command` with its Bash tool, then says "done"."""
    model.on(prompt, [tool_use("Bash", {"command": command}), text("done")])
    return turn(client, session_id, prompt)


def deploy(client: httpx.Client, name: str, config: dict[str, Any] | None = None) -> None:
    files = [{"path": "CLAUDE.md", "content": base64.b64encode(b"You are a test agent.").decode()}]
    assert client.post("/api/agents", json={"name": name, "files": files}).status_code == 201
    if config:
        response = client.patch(f"/api/agents/{name}/config", json=config)
        assert response.status_code == 200, response.text


def healthy(server: AshServer) -> dict[str, Any]:
    response = httpx.get(server.url + "/health", timeout=10)
    assert response.status_code == 200
    health: dict[str, Any] = response.json()
    assert health["status"] == "ok"
    return health


@contextmanager
def running_server(model_url: str, env: dict[str, str] | None = None) -> Iterator[AshServer]:
    """A real server on the fake model for a module's tests, cleaned up after them."""
    server = AshServer(model_url, env=env).start()
    try:
        yield server
    finally:
        server.cleanup()


@contextmanager
def client_with_agents(server: AshServer, *agents: str | tuple[str, dict[str, Any]]) -> Iterator[httpx.Client]:
    """A client of `server` with these agents deployed (a name, or a name and its config)."""
    with server.client() as client:
        for agent in agents:
            name, config = agent if isinstance(agent, tuple) else (agent, None)
            deploy(client, name, config)
        yield client
