"""A sandbox that cannot start, or dies, gives a clear error and leaves the session resumable."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from tests.api.test_bad_input import assert_error
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.metrics import samples, total
from tests.support.processes import pids_with_env
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow


def test_bridge_that_cannot_start_is_a_503_and_the_session_is_in_error(model: FakeAnthropic) -> None:
    server = AshServer(model.url, env={"ASH_BRIDGE_ENTRY": "/bin/false"}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "broken", "path": path}).status_code == 201
            assert_error(client.post("/api/sessions", json={"agent": "broken"}), 503, "sandbox failed to start")
            sessions = client.get("/api/sessions", params={"agent": "broken"}).json()["sessions"]
            assert [s["status"] for s in sessions] == ["error"]
            assert client.get("/health").json()["status"] == "ok"
            found = samples(client.get("/metrics").text)
            assert total(found, "ash_sandbox_failures_total", cause="start") == 1
            assert total(found, "ash_sandbox_starts_total") == 0
    finally:
        server.cleanup()


def test_sandbox_killed_mid_session_continues_on_a_new_one(model: FakeAnthropic) -> None:
    model.on("before the crash", text("noted"))
    model.on("after the crash", text("still here"))
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "crashy", "path": path}).status_code == 201
            session = client.post("/api/sessions", json={"agent": "crashy"}).json()["session"]
            sid = session["id"]
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "before the crash"}) as r:
                assert "event: done" in "".join(r.iter_text())
            for pid in pids_with_env("ASH_SANDBOX_ID", session["sandboxId"]):
                # Killing the first (bubblewrap) can take the others with it before we reach them.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while client.get("/health").json()["pool"]["total"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.get("/health").json()["pool"]["total"] == 0  # the dead sandbox no longer counts
            assert total(samples(client.get("/metrics").text), "ash_sandbox_failures_total", cause="crash") == 1
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "after the crash"}) as r:
                body = "".join(r.iter_text())
            assert "still here" in body
            seen = model.user_texts(model.requests_with_prompt("after the crash")[-1])
            assert seen == ["before the crash", "after the crash"]
            assert client.get(f"/api/sessions/{sid}").json()["session"]["sandboxId"] != session["sandboxId"]
    finally:
        server.cleanup()
