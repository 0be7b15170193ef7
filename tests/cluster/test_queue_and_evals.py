"""The queue, eval runs and attachments on a coordinator deployment: the coordinator's worker runs each item, and
each eval case, as a session on a runner (in its own network namespace), exactly as a client of the coordinator
would; kill -9 of the coordinator mid-item loses nothing and runs nothing twice to completion; an attachment uploaded
through the coordinator reaches the model from the runner (both read the S3 store)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import Deployment, runners_of
from tests.fakes.anthropic_api import text
from tests.support.server import REPO, AshServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

AGENT = str(REPO / "examples" / "hello-agent")
QUEUE = {"ASH_QUEUE_POLL_MS": "100", "ASH_QUEUE_RETRY_DELAY_MS": "100", "ASH_QUEUE_CONCURRENCY": "1"}


@pytest.fixture(scope="module")
def cluster(deployment: Deployment) -> Iterator[tuple[AshServer, AshServer]]:
    coordinator = deployment.coordinator(env=QUEUE).start()
    runner = deployment.runner("gamma", coordinator).start()
    wait_for(lambda: "gamma" in runners_of(coordinator), "the runner registered", 30)
    with coordinator.client() as client:
        assert client.post("/api/agents", json={"name": "queued", "path": AGENT}).status_code == 201
    yield coordinator, runner


def finished(client: httpx.Client, item_ids: list[str], timeout: float = 180) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        now = [client.get(f"/api/queue/{i}").json()["item"] for i in item_ids]
        return now if all(i["status"] in ("completed", "failed", "cancelled") for i in now) else None

    result: list[dict[str, Any]] = wait_for(check, "the queue items to finish", timeout)
    return result


def enqueue(client: httpx.Client, prompt: str, session_id: str | None = None) -> str:
    body = {"prompt": prompt, "agentName": "queued", **({"sessionId": session_id} if session_id else {})}
    response = client.post("/api/queue", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["item"]["id"])


def test_queue_items_run_as_sessions_on_a_runner(cluster: tuple[AshServer, AshServer], deployment: Deployment) -> None:
    coordinator, _ = cluster
    deployment.model.on("first queued", text("First answer from a runner."))
    deployment.model.on("second queued", text("Second answer, same session."))
    with coordinator.client() as client:
        (first,) = finished(client, [enqueue(client, "first queued")])
        assert first["status"] == "completed", first
        assert first["result"] == "First answer from a runner."
        session = client.get(f"/api/sessions/{first['sessionId']}").json()["session"]
        assert session["runnerId"] == "gamma"
        (second,) = finished(client, [enqueue(client, "second queued", first["sessionId"])])
        assert (second["status"], second["result"]) == ("completed", "Second answer, same session.")
        messages = client.get(f"/api/sessions/{first['sessionId']}/messages").json()["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        assert sum("first queued" in u for u in users) == 1 and sum("second queued" in u for u in users) == 1
        # A target that is gone fails at once, not after retries.
        client.delete(f"/api/sessions/{first['sessionId']}")
        gone = client.post("/api/queue", json={"prompt": "x", "agentName": "queued", "sessionId": first["sessionId"]})
        assert gone.status_code in (400, 404), gone.text


def test_an_eval_run_executes_its_cases_on_a_runner(
    cluster: tuple[AshServer, AshServer], deployment: Deployment
) -> None:
    coordinator, _ = cluster
    deployment.model.on("capital of italy", text("Rome is the capital of Italy."))
    with coordinator.client() as client:
        cases = "/api/agents/queued/eval-cases"
        case = client.post(cases, json={"question": "capital of italy?", "expectedTopics": ["Rome"]})
        assert case.status_code == 201, case.text
        created = client.post("/api/agents/queued/eval-runs", json={})
        assert created.status_code == 201, created.text
        run_id = created.json()["run"]["id"]

        def done() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(f"/api/agents/queued/eval-runs/{run_id}").json()["run"]
            return run if run["status"] not in ("pending", "running") else None

        run = wait_for(done, "the eval run to finish", 180)
        assert run["status"] == "completed" and run["summary"]["passRate"] == 1.0, run
        (result,) = client.get(f"/api/agents/queued/eval-runs/{run_id}/results").json()["results"]
        assert result["passed"] is True and "Rome" in result["agentResponse"]


def test_kill_9_of_the_coordinator_mid_item(cluster: tuple[AshServer, AshServer], deployment: Deployment) -> None:
    coordinator, _ = cluster
    model = deployment.model
    model.on("slow queued", text("slow " * 10, chunks=10, delay=0.5))
    model.on("quick queued", text("quick from the runner"))
    with coordinator.client() as client:
        session = client.post("/api/sessions", json={"agent": "queued"}).json()["session"]
        items = [enqueue(client, "slow queued", session["id"])]
        items += [enqueue(client, f"quick queued {n}", session["id"]) for n in (1, 2)]
        wait_for(lambda: client.get(f"/api/queue/{items[0]}").json()["item"]["status"] == "processing", "the run")
        wait_for(lambda: model.requests_with_prompt("slow queued"), "the slow turn to reach the model")
    coordinator.kill()
    time.sleep(0.5)
    coordinator.start()
    with coordinator.client() as client:
        final = finished(client, items, 240)
        assert [i["status"] for i in final] == ["completed"] * 3, final
        assert final[0]["result"] == "slow " * 10 and [i["result"] for i in final[1:]] == ["quick from the runner"] * 2
        # The item the killed coordinator ran counted one attempt.
        queue_log = "\n".join(line[:300] for line in coordinator.log().splitlines() if "queue:" in line)
        assert [i["retryCount"] for i in final] == [1, 0, 0], queue_log
        messages = client.get(f"/api/sessions/{session['id']}/messages", params={"limit": 100}).json()["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        # The slow one may have run twice (at least once: its first turn went on on the runner), the others once.
        assert 1 <= sum("slow queued" in u for u in users) <= 2
        assert sum("quick queued 1" in u for u in users) == 1 and sum("quick queued 2" in u for u in users) == 1
        stats = client.get("/api/queue/stats").json()["stats"]
        assert (stats["pending"], stats["processing"]) == (0, 0)


def test_attachments_through_the_coordinator_reach_the_model_on_the_runner(
    cluster: tuple[AshServer, AshServer], deployment: Deployment
) -> None:
    coordinator, _ = cluster
    deployment.model.on("read the note", text("The note says hi."))
    with coordinator.client() as client:
        sid = client.post("/api/sessions", json={"agent": "queued"}).json()["session"]["id"]
        body = {
            "filename": "note.txt",
            "content": base64.b64encode(b"hi from the note").decode(),
            "mimeType": "text/plain",
        }
        uploaded = client.post(f"/api/sessions/{sid}/attachments", json=body)
        assert uploaded.status_code == 201, uploaded.text
        attachment = uploaded.json()["attachment"]["id"]
        listed = client.get(f"/api/sessions/{sid}/attachments").json()["attachments"]
        assert [a["id"] for a in listed] == [attachment]
        assert client.get(f"/api/attachments/{attachment}").content == b"hi from the note"
        message = {"content": "read the note", "attachments": [attachment]}
        with client.stream("POST", f"/api/sessions/{sid}/messages", json=message) as stream:
            assert stream.status_code == 200 and "The note says hi." in stream.read().decode()
        (request,) = deployment.model.requests_with_prompt("read the note")
        blocks = [b for m in request["messages"] if m["role"] == "user" for b in m["content"] if isinstance(b, dict)]
        assert any(b.get("type") == "document" and b["source"]["data"] == "hi from the note" for b in blocks)
        assert client.delete(f"/api/sessions/{sid}").status_code == 200
        gone = client.get(f"/api/attachments/{attachment}")
        assert gone.status_code == 404, gone.text
