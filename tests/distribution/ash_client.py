"""The `ash` CLI and HTTP, from the test process, against a deployed server: what an operator does after installing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.distribution.podman import REPO
from tests.support.bytecode import IMPORTS_IN_SANDBOX, check_bridge_bytecode

ASH = Path(sys.executable).parent / "ash"
HELLO_AGENT = REPO / "examples" / "hello-agent"


@dataclass
class Deployed:
    """A server the test reaches at `url` with `api_key`."""

    url: str
    api_key: str
    home: Path

    def ash(self, *args: str, timeout: float = 240) -> str:
        env = {
            **os.environ,
            "HOME": str(self.home),
            "ASH_SERVER_URL": self.url,
            "ASH_API_KEY": self.api_key,
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        env.pop("ASH_DATA_DIR", None)
        result = subprocess.run([str(ASH), *args], env=env, capture_output=True, text=True, timeout=timeout)
        output = f"{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, f"ash {' '.join(args)} exited {result.returncode}:\n{output}"
        return result.stdout

    def health(self) -> dict[str, object]:
        response = httpx.get(f"{self.url}/health", timeout=10)
        response.raise_for_status()
        body = response.json()
        assert isinstance(body, dict)
        return body

    def wait_healthy(self, limit_s: float = 180) -> dict[str, object]:
        deadline, last = time.monotonic() + limit_s, ""
        while time.monotonic() < deadline:
            try:
                return self.health()
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise AssertionError(f"{self.url}/health did not answer within {limit_s} s: {last}")

    def get(self, path: str) -> object:
        response = httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)
        response.raise_for_status()
        return response.json()

    def exec(self, session_id: str, command: str, timeout_ms: int = 30_000) -> dict[str, object]:
        """POST /api/sessions/{id}/exec: `command` in the session's sandbox."""
        response = httpx.post(
            f"{self.url}/api/sessions/{session_id}/exec",
            headers={"Authorization": f"Bearer {self.api_key}"},
            json={"command": command, "timeout": timeout_ms},
            timeout=timeout_ms / 1000 + 30,
        )
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result

    def check_bridge_bytecode(self, session_id: str) -> None:
        """The install compiled the bridge's and the SDK's bytecode: the session's sandbox compiles nothing."""
        check_bridge_bytecode(self.exec(session_id, IMPORTS_IN_SANDBOX))

    def check_runs_under_gvisor(self, session_id: str) -> None:
        """The session's sandbox runs under gVisor: its kernel's boot log is gVisor's, its user is not root."""
        result = self.exec(session_id, "dmesg 2>&1 | head -3; id -u")
        out = str(result.get("stdout", ""))
        assert "gVisor" in out, result
        assert out.split()[-1] != "0", result

    def deploy_hello(self, name: str = "hello") -> None:
        self.ash("deploy", str(HELLO_AGENT), "--name", name)

    def new_session(self, agent: str = "hello") -> str:
        return self.ash("session", "create", agent).strip().split()[-1]

    def send(self, session_id: str, message: str) -> str:
        """One turn; the streamed reply (the fake model echoes what it was asked)."""
        return self.ash("session", "send", session_id, message)
