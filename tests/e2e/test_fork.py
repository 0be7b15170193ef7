"""Fork: a copy of a session's workspace and conversation at that moment, which then lives its own life."""

from __future__ import annotations

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text, tool_use
from tests.support.server import REPO, AshServer
from tests.support.sse import turn_text as turn

pytestmark = pytest.mark.slow


def test_parent_and_fork_diverge(model: FakeAnthropic) -> None:
    model.on("my name is", text("Hello, Lin."))
    model.on("write the plan", [tool_use("Bash", {"command": "echo v1 > plan.txt"}), text("Written.")])
    model.on("child edits", [tool_use("Bash", {"command": "echo child > plan.txt; echo c > child.txt"}), text("Ok.")])
    model.on("parent edits", [tool_use("Bash", {"command": "echo parent > plan.txt"}), text("Ok.")])
    model.on("recall", echo())
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "forky", "path": path}).status_code == 201
            parent = client.post("/api/sessions", json={"agent": "forky"}).json()["session"]["id"]
            turn(client, parent, "my name is Lin")
            turn(client, parent, "write the plan")

            forked = client.post(f"/api/sessions/{parent}/fork")
            assert forked.status_code == 201, forked.text
            child = forked.json()["session"]
            assert child["status"] == "paused" and child["parentSessionId"] == parent and child["id"] != parent
            parent_messages = client.get(f"/api/sessions/{parent}/messages").json()["messages"]
            child_messages = client.get(f"/api/sessions/{child['id']}/messages").json()["messages"]
            assert [m["content"] for m in child_messages] == [m["content"] for m in parent_messages]
            assert client.get(f"/api/sessions/{child['id']}/files/plan.txt").text == "v1\n"
            assert (
                client.post(
                    f"/api/sessions/{child['id']}/messages", json={"content": "x", "autoResume": False}
                ).status_code
                == 400
            )

            # The fork continues the conversation from the moment it was made, in its own files.
            assert client.post(f"/api/sessions/{child['id']}/resume").json()["session"]["status"] == "active"
            turn(client, child["id"], "child edits")
            turn(client, child["id"], "recall from the child")
            seen = model.user_texts(model.requests_with_prompt("recall from the child")[-1])
            assert seen == ["my name is Lin", "write the plan", "child edits", "recall from the child"]

            # The parent goes its own way: it sees neither the child's turns nor its files.
            turn(client, parent, "parent edits")
            turn(client, parent, "recall from the parent")
            seen = model.user_texts(model.requests_with_prompt("recall from the parent")[-1])
            assert seen == ["my name is Lin", "write the plan", "parent edits", "recall from the parent"]
            assert client.get(f"/api/sessions/{parent}/files/plan.txt").text == "parent\n"
            assert client.get(f"/api/sessions/{parent}/files/child.txt").status_code == 404
            assert client.get(f"/api/sessions/{child['id']}/files/plan.txt").text == "child\n"

            # Forking a session that has ended is refused; an unknown one is a 404.
            client.delete(f"/api/sessions/{child['id']}")
            assert client.post(f"/api/sessions/{child['id']}/fork").status_code == 410
            assert client.post("/api/sessions/00000000-0000-0000-0000-000000000000/fork").status_code == 404
    finally:
        server.cleanup()
