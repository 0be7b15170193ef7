"""kill -9 with queue items pending and one running: after a restart on the same data dir every item ends once,
completed, none lost and none left pending or running; the running one ran again (at-least-once)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ENV = {"ASH_QUEUE_POLL_MS": "100", "ASH_QUEUE_RETRY_DELAY_MS": "100", "ASH_QUEUE_CONCURRENCY": "1"}


def test_kill_9_with_items_pending_and_one_running(model: FakeAnthropic) -> None:
    model.on("slow item", text("slow " * 20, chunks=20, delay=0.5))
    model.on("quick item", text("quick answer"))
    server = AshServer(model.url, env=ENV).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "crashy", "path": path}).status_code == 201
            session = client.post("/api/sessions", json={"agent": "crashy"}).json()["session"]
            prompts = [("slow item", session["id"]), ("quick item 1", None)]
            prompts += [(f"quick item {n}", session["id"]) for n in (2, 3)]
            items = [
                client.post(
                    "/api/queue",
                    json={"prompt": prompt, "agentName": "crashy", **({"sessionId": sid} if sid else {})},
                ).json()["item"]
                for prompt, sid in prompts
            ]
            slow = items[0]["id"]
            wait_for(lambda: client.get(f"/api/queue/{slow}").json()["item"]["status"] == "processing", "the slow run")
            wait_for(lambda: model.requests_with_prompt("slow item"), "the slow turn to reach the model")
            statuses = {i["id"]: client.get(f"/api/queue/{i['id']}").json()["item"]["status"] for i in items}
            assert list(statuses.values()) == ["processing", "pending", "pending", "pending"]
        server.kill()

        server.start()
        with server.client() as client:

            def all_finished() -> list[dict[str, Any]] | None:
                now = [client.get(f"/api/queue/{i['id']}").json()["item"] for i in items]
                return now if all(i["status"] in ("completed", "failed") for i in now) else None

            final = wait_for(all_finished, "every item to finish after the restart", 180)
            assert [i["status"] for i in final] == ["completed"] * 4, final
            assert [i["retryCount"] for i in final] == [1, 0, 0, 0]  # the killed run counted one attempt
            assert final[0]["result"] == "slow " * 20
            assert [i["result"] for i in final[1:]] == ["quick answer"] * 3
            stats = client.get("/api/queue/stats").json()["stats"]
            assert (stats["pending"], stats["processing"], stats["completed"]) == (0, 0, 4)
            # The pending ones ran once each; the one that was running when the server died ran again.
            messages = client.get(f"/api/sessions/{session['id']}/messages", params={"limit": 100}).json()
            users = [m["content"] for m in messages["messages"] if m["role"] == "user"]
            assert sum("slow item" in u for u in users) == 2
            assert sum("quick item 2" in u for u in users) == 1 and sum("quick item 3" in u for u in users) == 1
            assert final[1]["sessionId"] not in (None, session["id"])
    finally:
        server.cleanup()
