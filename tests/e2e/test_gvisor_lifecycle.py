"""An agent deployed with `"runtime": "gvisor"` lives like any other: it chats, pauses, stops, resumes, survives the
server's kill -9 (which leaves no runsc container behind once the server is back) and forks; a tenant held to gVisor
(ASH_TENANT_RUNTIMES) gets it for every agent and may not ask for bubblewrap."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text, tool_use
from tests.support.processes import pids_with_env
from tests.support.server import REPO, AshServer
from tests.support.sse import events_of
from tests.support.sse import turn_text as turn
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# What the agent runs to say which kernel it is on: gVisor's boot log is its own.
KERNEL = "dmesg 2>&1 | head -1"


def containers(server: AshServer) -> list[str]:
    """The runsc containers in the server's state dir."""
    state = server.data_dir / "run" / "gvisor" / "state"
    listed = subprocess.run(["runsc", f"--root={state}", "list", "--quiet"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def tool_text(client: httpx.Client, sid: str, prompt: str) -> str:
    events = events_of(turn(client, sid, prompt))
    results = [data for name, data in events if name == "tool_result"]
    assert results, [name for name, _ in events]
    content = results[-1]["content"]
    return "".join(c.get("text", "") for c in content) if isinstance(content, list) else str(content)


def test_a_gvisor_agent_pauses_resumes_across_a_kill_9_and_forks(model: FakeAnthropic) -> None:
    model.on("remember the number", text("Seven it is."))
    model.on("write the plan", [tool_use("Bash", {"command": f"echo v1 > plan.txt; {KERNEL}"}), text("Written.")])
    model.on("which kernel", [tool_use("Bash", {"command": f"cat plan.txt; {KERNEL}"}), text("This one.")])
    model.on("recall", echo())
    # bubblewrap by default; the agent asks for gVisor, and its tenant is held to it.
    server = AshServer(model.url, env={"ASH_TENANT_RUNTIMES": "default=gvisor"}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "walled", "path": path}).status_code == 201
            config = client.patch("/api/agents/walled/config", json={"runtime": "gvisor"})
            assert config.status_code == 200, config.text
            refused = client.patch("/api/agents/walled/config", json={"runtime": "bwrap"})
            assert refused.status_code == 400 and "under gvisor only" in refused.json()["error"]
            # An agent that asks for nothing gets its tenant's runtime.
            assert client.post("/api/agents", json={"name": "plain", "path": path}).status_code == 201
            plain = client.post("/api/sessions", json={"agent": "plain"}).json()["session"]
            assert plain["sandboxId"] in containers(server)
            client.delete(f"/api/sessions/{plain['id']}")
            session = client.post("/api/sessions", json={"agent": "walled"}).json()["session"]
            sid = session["id"]
            assert session["sandboxId"] in containers(server)
            turn(client, sid, "remember the number 7")
            assert "gVisor" in tool_text(client, sid, "write the plan")

            # A warm pause keeps the container; a stop deletes it (the warm pool may have others for the agent).
            assert client.post(f"/api/sessions/{sid}/pause").status_code == 200
            assert session["sandboxId"] in containers(server)
            assert client.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
            assert client.post(f"/api/sessions/{sid}/stop").status_code == 200
            assert session["sandboxId"] not in containers(server)
            assert client.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
            sandbox_id = client.get(f"/api/sessions/{sid}").json()["session"]["sandboxId"]
            assert sandbox_id != session["sandboxId"] and sandbox_id in containers(server)
            turn(client, sid, "recall before the crash")
            seen = model.user_texts(model.requests_with_prompt("recall before the crash")[-1])
            assert seen == ["remember the number 7", "write the plan", "recall before the crash"]

        server.kill()
        # runsc dies with the server (its parent-death signal), and the sandbox with runsc (--attached).
        wait_for(lambda: not pids_with_env("ASH_SANDBOX_ID", sandbox_id), "the sandbox to die with the server", 15)
        left = containers(server)
        assert sandbox_id in left  # its state is left for the next start to sweep
        bundles = server.data_dir / "run" / "gvisor" / "bundles"
        assert (bundles / sandbox_id).is_dir()

        server.start()
        with server.client() as client:
            assert not set(left) & set(containers(server))
            assert not (bundles / sandbox_id).exists()
            assert client.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
            after = tool_text(client, sid, "which kernel now")
            assert "v1" in after and "gVisor" in after
            turn(client, sid, "recall after the restart")
            seen = model.user_texts(model.requests_with_prompt("recall after the restart")[-1])
            assert seen[:2] == ["remember the number 7", "write the plan"]

            forked = client.post(f"/api/sessions/{sid}/fork")
            assert forked.status_code == 201, forked.text
            child = forked.json()["session"]["id"]
            assert client.post(f"/api/sessions/{child}/resume").json()["session"]["status"] == "active"
            in_child = tool_text(client, child, "which kernel in the fork")
            assert "v1" in in_child and "gVisor" in in_child
            assert client.get(f"/api/sessions/{child}/files/plan.txt").text == "v1\n"
    finally:
        server.cleanup()
    assert not pids_with_env("ASH_SANDBOX_ID", sandbox_id)
