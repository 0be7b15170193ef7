"""The sandbox pool with a real server: capacity, LRU eviction, 503 when everything runs, and what survives a
restart (pool stats, files, conversation)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text, tool_use
from tests.support.processes import env_values
from tests.support.server import REPO, AshServer
from tests.support.sse import turn_text as turn
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def slow_turn(server: AshServer, sid: str) -> None:
    with server.client() as client:
        turn(client, sid, "think slowly")


def create(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/api/sessions", json={"agent": "pooled"})
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


def session_of(client: httpx.Client, sid: str) -> dict[str, Any]:
    session: dict[str, Any] = client.get(f"/api/sessions/{sid}").json()["session"]
    return session


def test_eviction_capacity_and_restart(model: FakeAnthropic) -> None:
    model.on("my name is", text("Nice to meet you, Ada."))
    model.on("keep a file", [tool_use("Bash", {"command": "echo kept > kept.txt"}), text("Kept.")])
    model.on("what is my name", echo())
    model.on("think slowly", text("slow " * 60, chunks=60, delay=1.0))
    model.on("hello", text("Hi."))
    server = AshServer(model.url, env={"ASH_MAX_SANDBOXES": "2"}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "pooled", "path": path}).status_code == 201
            s1 = create(client)
            turn(client, s1["id"], "my name is Ada")
            turn(client, s1["id"], "keep a file for me")
            s2 = create(client)
            turn(client, s2["id"], "hello")

            # Full: the least recently used idle sandbox (s1's) makes room, persisted first.
            s3 = create(client)
            evicted = session_of(client, s1["id"])
            assert evicted["status"] == "active" and evicted["sandboxId"] == ""
            assert s1["sandboxId"] not in env_values("ASH_SANDBOX_ID", under=server.process.pid)  # type: ignore[union-attr]
            stats = client.get("/health").json()["pool"]
            assert (stats["total"], stats["cold"], stats["evictions"], stats["maxCapacity"]) == (2, 1, 1, 2)

            # Everything running a turn: nothing can be evicted, a new sandbox is a clear 503.
            readers = [threading.Thread(target=slow_turn, args=(server, sid)) for sid in (s2["id"], s3["id"])]
            for reader in readers:
                reader.start()
            wait_for(lambda: client.get("/health").json()["pool"]["running"] == 2, "two running turns")
            refused = client.post("/api/sessions", json={"agent": "pooled"})
            assert refused.status_code == 503 and "all 2 sandboxes are running turns" in refused.json()["error"]
            busy = client.post(f"/api/sessions/{s1['id']}/messages", json={"content": "what is my name"})
            assert busy.status_code == 503
            assert session_of(client, s1["id"])["status"] == "active"  # untouched, still resumable
            for sid in (s2["id"], s3["id"]):
                client.post(f"/api/sessions/{sid}/interrupt")
            for reader in readers:
                reader.join(timeout=60)

            # The evicted session continues transparently (cold path), with its memory and its files.
            turn(client, s1["id"], "what is my name")
            seen = model.user_texts(model.requests_with_prompt("what is my name")[-1])
            assert seen[:2] == ["my name is Ada", "keep a file for me"]
            assert client.get(f"/api/sessions/{s1['id']}/files/kept.txt").text == "kept\n"
            assert client.get("/health").json()["pool"]["resumeColdHits"] == 1
            assert client.post(f"/api/sessions/{s1['id']}/pause").json()["session"]["status"] == "paused"

        # A graceful restart: every sandbox is persisted and stopped; the pool table says so afterwards.
        server.stop()
        assert "Application shutdown complete" in server.log()
        server.start()
        with server.client() as client:
            stats = client.get("/health").json()["pool"]
            assert (stats["total"], stats["running"], stats["cold"], stats["maxCapacity"]) == (0, 0, 3, 2)
            assert {session_of(client, s["id"])["status"] for s in (s1, s2, s3)} == {"paused"}
            resumed = client.post(f"/api/sessions/{s1['id']}/resume").json()["session"]
            assert resumed["status"] == "active" and resumed["sandboxId"]
            turn(client, s1["id"], "what is my name, again?")
            seen = model.user_texts(model.requests_with_prompt("what is my name, again?")[-1])
            assert seen == ["my name is Ada", "keep a file for me", "what is my name", "what is my name, again?"]
            stats = client.get("/health").json()["pool"]
            assert (stats["total"], stats["waiting"], stats["cold"], stats["resumeColdHits"]) == (1, 1, 2, 1)
    finally:
        server.cleanup()
