"""A real Ash server in a subprocess (uvicorn on loopback), as users and clients see it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_tempdir() -> Path:
    """A temp dir under /tmp that the sandbox user (uid 65534 when tests run as root) can traverse.

    pytest's tmp_path lives under a 0700 folder and makes Unix socket paths too long.
    """
    path = Path(tempfile.mkdtemp(prefix="ash-"))
    path.chmod(0o755)
    return path


class AshServer:
    def __init__(
        self,
        model_url: str,
        *,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        argv_prefix: list[str] | None = None,
    ) -> None:
        """`database_url`: a PostgreSQL URL (tests/support/postgres.py) instead of SQLite in the data dir.
        `host`/`port`: where it listens and is reached; `argv_prefix`: run it through this (`ip netns exec ns`)."""
        self.root = short_tempdir() if data_dir is None else None
        self.data_dir = data_dir or (self.root / "data")  # type: ignore[operator]
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.argv_prefix = argv_prefix or []
        self.env = {
            **os.environ,
            "ASH_DATA_DIR": str(self.data_dir),
            "ASH_PORT": str(self.port),
            "ASH_HOST": host,
            "ASH_AGENT_ROOTS": str(REPO / "examples") + "," + tempfile.gettempdir(),
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": "sk-ant-test-server-key",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            # Off unless a test asks: most count their sandboxes and processes, and a warm start per deploy would
            # double the suite's CPU. tests/e2e/test_warm_pool.py runs the default (on) as a user gets it.
            "ASH_WARM_POOL_SIZE": "0",
            **({"ASH_DATABASE_URL": database_url} if database_url else {}),
            **(env or {}),
        }
        self.database_url = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60) -> AshServer:
        return self.launch().wait_healthy(timeout)

    def launch(self) -> AshServer:
        """Start the process without waiting for it (`wait_healthy()` does)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.argv_prefix, sys.executable, "-m", "ash_server"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_healthy(self, timeout: float = 60) -> AshServer:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    @property
    def api_key(self) -> str:
        configured = self.env.get("ASH_API_KEY")
        if configured:
            return configured
        return (self.data_dir / "api-key").read_text().strip()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=120, **kwargs
        )

    def admin(self, *args: str) -> dict[str, Any]:
        """`ash --json admin ...` on this server's host: its data dir, database and secret, as an operator would."""
        result = subprocess.run(
            [sys.executable, "-m", "ash_cli", "--json", "admin", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ash admin {' '.join(args)} failed: {result.stderr}")
        created: dict[str, Any] = json.loads(result.stdout)
        return created

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def cleanup(self) -> None:
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> AshServer:
        """`with AshServer(...) as server:` starts it, and stops and removes it after (a fixture's whole body)."""
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.cleanup()
