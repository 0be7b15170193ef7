"""`ash queue` against a real server: add, get, list, stats, cancel, as users run it (`python -m ash_cli`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    server = AshServer(fake_model.url, env={"ASH_QUEUE_POLL_MS": "100"}).start()
    try:
        yield server
    finally:
        server.cleanup()


def ash(server: AshServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASH_SERVER_URL": server.url, "ASH_API_KEY": server.api_key, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "ash_cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def ash_json(server: AshServer, *args: str) -> Any:
    result = ash(server, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_queue_commands(server: AshServer, fake_model: FakeAnthropic) -> None:
    fake_model.on("cli queued", text("from the queue"))
    with server.client() as client:
        path = str(REPO / "examples" / "hello-agent")
        assert client.post("/api/agents", json={"name": "cliq", "path": path}).status_code == 201
    item = ash_json(server, "queue", "add", "cli queued", "--agent", "cliq", "--idempotency-key", "k1")
    assert item["status"] == "pending" and item["idempotencyKey"] == "k1"
    assert (
        ash_json(server, "queue", "add", "cli queued", "--agent", "cliq", "--idempotency-key", "k1")["id"]
        == (item["id"])
    )
    done = wait_for(
        lambda: (got := ash_json(server, "queue", "get", item["id"]))["status"] == "completed" and got, "the run"
    )
    assert done["result"] == "from the queue"
    shown = ash(server, "queue", "get", item["id"])
    assert "completed" in shown.stdout and "from the queue" in shown.stdout
    assert [i["id"] for i in ash_json(server, "queue", "list", "--status", "completed")] == [item["id"]]
    assert item["id"] in ash(server, "queue", "list").stdout
    assert ash_json(server, "queue", "stats")["completed"] == 1
    refused = ash(server, "queue", "cancel", item["id"])
    assert refused.returncode == 1 and "Cannot cancel item" in refused.stderr and "Traceback" not in refused.stderr
    missing = ash(server, "queue", "add", "x", "--agent", "nobody")
    assert missing.returncode == 1 and "Agent not found" in missing.stderr
