"""Idle sandboxes are reclaimed; their sessions continue on a new sandbox, remembering everything."""

from __future__ import annotations

import time

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.processes import pids_with_env
from tests.support.server import REPO, AshServer, short_tempdir

pytestmark = pytest.mark.slow


def test_idle_sandbox_is_reclaimed_and_the_session_continues(model: FakeAnthropic) -> None:
    model.on("remember the number", text("I will remember 42."))
    model.on("which number", text("It was 42."))
    server = AshServer(model.url, env={"ASH_IDLE_TIMEOUT_MS": "1000"}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "idle", "path": path}).status_code == 201
            session = client.post("/api/sessions", json={"agent": "idle"}).json()["session"]
            sid, first_sandbox = session["id"], session["sandboxId"]
            with client.stream(
                "POST", f"/api/sessions/{sid}/messages", json={"content": "remember the number 42"}
            ) as r:
                assert "event: done" in "".join(r.iter_text())
            deadline = time.monotonic() + 15
            while client.get(f"/api/sessions/{sid}").json()["session"]["sandboxId"] and time.monotonic() < deadline:
                time.sleep(0.2)
            after = client.get(f"/api/sessions/{sid}").json()["session"]
            assert after["status"] == "active" and after["sandboxId"] == ""
            assert pids_with_env("ASH_SANDBOX_ID", first_sandbox) == []
            assert client.get("/health").json()["activeSandboxes"] == 0
            assert client.get("/health").json()["pool"]["cold"] == 1  # swept: persisted, without a sandbox

            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "which number was it"}) as r:
                body = "".join(r.iter_text())
            assert "It was 42." in body
            assert model.user_texts(model.requests_with_prompt("which number")[-1])[0] == "remember the number 42"
            assert client.get("/health").json()["pool"]["resumeColdHits"] == 1
    finally:
        server.cleanup()


def test_an_ended_session_keeps_its_files_for_the_retention_period_only(model: FakeAnthropic) -> None:
    model.on("leave a trace", text("Done."))
    snapshots = short_tempdir() / "snapshots"
    env = {"ASH_SESSION_RETENTION_MS": "1500", "ASH_IDLE_TIMEOUT_MS": "1000", "ASH_SNAPSHOT_URL": f"file://{snapshots}"}
    server = AshServer(model.url, env=env).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "brief", "path": path}).status_code == 201
            sid = client.post("/api/sessions", json={"agent": "brief"}).json()["session"]["id"]
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "leave a trace"}) as r:
                assert "event: done" in "".join(r.iter_text())
            assert client.post(f"/api/sessions/{sid}/pause").status_code == 200  # snapshotted
            folder = server.data_dir / "sessions" / "default" / sid
            assert folder.is_dir() and list((snapshots / "default" / sid).iterdir())
            assert client.delete(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
            deadline = time.monotonic() + 30
            while (folder.exists() or list((snapshots / "default" / sid).iterdir())) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not folder.exists()
            assert list((snapshots / "default" / sid).iterdir()) == []
            assert client.get(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"  # the record stays
    finally:
        server.cleanup()
