"""/api/queue through HTTP against a real server and the fake model: enqueue, the worker runs items to `completed`
with the model's answer, idempotency keys, cancel, tenant isolation, bad input, and a restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

FAST_QUEUE = {"ASH_QUEUE_POLL_MS": "100", "ASH_QUEUE_RETRY_DELAY_MS": "100"}


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    server = AshServer(fake_model.url, env=FAST_QUEUE).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "queued", "path": path}).status_code == 201
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def finished(client: httpx.Client, item_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        item: dict[str, Any] = client.get(f"/api/queue/{item_id}").json()["item"]
        return item if item["status"] in ("completed", "failed", "cancelled") else None

    done: dict[str, Any] = wait_for(check, f"queue item {item_id} to finish", 120)
    return done


def test_an_enqueued_prompt_runs_to_completed_with_the_answer(client: httpx.Client, fake_model: FakeAnthropic) -> None:
    fake_model.on("queued question", text("The queued answer."))
    response = client.post("/api/queue", json={"agentName": "queued", "prompt": "a queued question"})
    assert response.status_code == 201, response.text
    item = response.json()["item"]
    assert (item["status"], item["agentName"], item["retryCount"], item["maxRetries"]) == ("pending", "queued", 0, 3)
    done = finished(client, item["id"])
    assert (done["status"], done["result"], done["error"]) == ("completed", "The queued answer.", None)
    assert done["startedAt"] and done["completedAt"] and done["sessionId"]
    session = client.get(f"/api/sessions/{done['sessionId']}").json()["session"]
    assert session["agentName"] == "queued"
    listed = client.get("/api/queue", params={"status": "completed"}).json()["items"]
    assert item["id"] in [i["id"] for i in listed]
    stats = client.get("/api/queue/stats").json()["stats"]
    assert set(stats) == {"pending", "processing", "completed", "failed", "cancelled"} and stats["completed"] >= 1


def test_items_of_one_session_run_in_turn_and_a_pending_one_can_be_cancelled(
    client: httpx.Client, fake_model: FakeAnthropic
) -> None:
    fake_model.on("slow queued", text("slow " * 20, chunks=20, delay=0.3))
    fake_model.on("second queued", text("second answer"))
    session = client.post("/api/sessions", json={"agent": "queued"}).json()["session"]
    first = client.post("/api/queue", json={"sessionId": session["id"], "prompt": "slow queued"}).json()["item"]
    assert first["agentName"] == "queued"  # taken from the session
    second = client.post("/api/queue", json={"sessionId": session["id"], "prompt": "second queued"}).json()["item"]
    third = client.post("/api/queue", json={"sessionId": session["id"], "prompt": "second queued again"}).json()
    wait_for(lambda: client.get(f"/api/queue/{first['id']}").json()["item"]["status"] == "processing", "a run")
    # The session's other items wait for the running one.
    assert client.get(f"/api/queue/{second['id']}").json()["item"]["status"] == "pending"
    cancelled = client.delete(f"/api/queue/{third['item']['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["item"]["status"] == "cancelled"
    again = client.delete(f"/api/queue/{third['item']['id']}")
    assert again.status_code == 400 and again.json()["error"].startswith("Cannot cancel item with status")
    assert finished(client, first["id"])["status"] == "completed"
    done = finished(client, second["id"])
    assert (done["status"], done["result"], done["sessionId"]) == ("completed", "second answer", session["id"])
    assert client.delete(f"/api/queue/{done['id']}").status_code == 400


def test_an_idempotency_key_makes_a_retried_enqueue_return_the_first_item(client: httpx.Client) -> None:
    body = {"agentName": "queued", "prompt": "idempotent one"}
    first = client.post("/api/queue", json=body, headers={"Idempotency-Key": "enqueue-1"})
    replay = client.post("/api/queue", json=body, headers={"Idempotency-Key": "enqueue-1"})
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["item"]["id"] == first.json()["item"]["id"]
    in_body = client.post("/api/queue", json={**body, "idempotencyKey": "enqueue-1"})
    assert in_body.json()["item"]["id"] == first.json()["item"]["id"]
    other = client.post(
        "/api/queue", json={**body, "prompt": "something else"}, headers={"Idempotency-Key": "enqueue-1"}
    )
    assert other.status_code == 409
    keyed = [
        i for i in client.get("/api/queue", params={"limit": 500}).json()["items"] if i["prompt"] == body["prompt"]
    ]
    assert len(keyed) == 1 and keyed[0]["idempotencyKey"] == "enqueue-1"


@pytest.mark.parametrize(
    "body",
    [
        {"agentName": "queued"},
        {"agentName": "queued", "prompt": ""},
        {"prompt": "no target"},
        {"agentName": "queued", "prompt": "x", "priority": -1},
        {"agentName": "queued", "prompt": "x", "maxRetries": "many"},
        {"agentName": "queued", "prompt": "x", "sessionId": "not-a-uuid"},
        {"agentName": "queued", "prompt": "x", "idempotencyKey": ""},
    ],
)
def test_bad_input_is_a_400(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/api/queue", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["statusCode"] == 400


def test_unknown_targets_and_bad_queries(client: httpx.Client) -> None:
    agent = client.post("/api/queue", json={"agentName": "nobody", "prompt": "x"})
    assert agent.status_code == 404 and agent.json()["error"].startswith("Agent not found")
    sid = "00000000-0000-4000-8000-000000000000"
    session = client.post("/api/queue", json={"sessionId": sid, "prompt": "x"})
    assert session.status_code == 404 and session.json()["error"].startswith("Session not found")
    missing = client.get(f"/api/queue/{sid}")
    assert missing.status_code == 404 and missing.json()["error"].startswith("Queue item not found")
    assert client.delete(f"/api/queue/{sid}").status_code == 404
    assert client.get("/api/queue/not-a-uuid").status_code == 400
    assert client.get("/api/queue", params={"status": "done"}).status_code == 400
    assert client.get("/api/queue", params={"limit": 0}).status_code == 400
    assert httpx.get(client.base_url.join("/api/queue")).status_code == 401


def test_another_tenant_sees_nothing_of_the_queue(server: AshServer, client: httpx.Client) -> None:
    key_b = server.admin("create-tenant", "queue-tenant-b")["key"]
    session = client.post("/api/sessions", json={"agent": "queued"}).json()["session"]
    item = client.post("/api/queue", json={"agentName": "queued", "prompt": "tenant a's"}).json()["item"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key_b}"}, timeout=60) as b:
        assert b.get(f"/api/queue/{item['id']}").status_code == 404
        assert b.delete(f"/api/queue/{item['id']}").status_code == 404
        assert b.get("/api/queue").json() == {"items": []}
        assert set(b.get("/api/queue/stats").json()["stats"].values()) == {0}
        assert b.post("/api/queue", json={"agentName": "queued", "prompt": "x"}).status_code == 404
        assert b.post("/api/queue", json={"sessionId": session["id"], "prompt": "x"}).status_code == 404
        # The same idempotency key in another tenant is another item.
        key = {"Idempotency-Key": "shared-key"}
        client.post("/api/queue", json={"agentName": "queued", "prompt": "k"}, headers=key)
        assert b.post("/api/queue", json={"agentName": "queued", "prompt": "k"}, headers=key).status_code == 404
    assert client.get(f"/api/queue/{item['id']}").status_code == 200


def test_items_survive_a_restart(server: AshServer, client: httpx.Client, fake_model: FakeAnthropic) -> None:
    fake_model.on("before restart", text("kept"))
    item = client.post("/api/queue", json={"agentName": "queued", "prompt": "before restart"}).json()["item"]
    done = finished(client, item["id"])
    server.stop()
    server.start()
    with server.client() as after:
        again = after.get(f"/api/queue/{item['id']}").json()["item"]
        assert again == done
        assert item["id"] in [i["id"] for i in after.get("/api/queue").json()["items"]]
