"""The warm pool: sandboxes started ahead, handed only to sessions they were made for, without a process start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.processes import env_values
from tests.support.server import REPO, AshServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

CREDENTIAL_KEY = "credential-master-key-for-tests-0123456789"
SESSION_KEY = "sk-ant-api03-warm-pool-credential-" + "w" * 24 + "AbCd"


def pool(client: httpx.Client) -> dict[str, int]:
    stats: dict[str, int] = client.get("/health").json()["pool"]
    return stats


def sandbox_processes(server: AshServer) -> dict[str, set[int]]:
    """The server's live sandbox processes by sandbox id, from the process table."""
    assert server.process is not None
    return env_values("ASH_SANDBOX_ID", under=server.process.pid)


def exec_in(client: httpx.Client, sid: str, command: str) -> str:
    response = client.post(f"/api/sessions/{sid}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return str(response.json()["stdout"]).strip()


def test_warm_sandboxes_go_only_to_sessions_they_were_made_for(model: FakeAnthropic) -> None:
    model.on("hello warm", text("Hello from a warm sandbox."))
    server = AshServer(model.url, env={"ASH_WARM_POOL_SIZE": "1", "ASH_CREDENTIAL_KEY": CREDENTIAL_KEY}).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "warm", "path": path}).status_code == 201
            wait_for(lambda: pool(client)["warm"] == 1, "a warm sandbox")
            warm_ids = set(sandbox_processes(server))
            assert len(warm_ids) == 1

            # Different environment: not the warm one (it stays warm), and the variable is really there.
            with_env = client.post("/api/sessions", json={"agent": "warm", "extraEnv": {"TEAM": "blue"}})
            assert with_env.status_code == 201, with_env.text
            env_session = with_env.json()["session"]
            assert env_session["sandboxId"] not in warm_ids
            assert exec_in(client, env_session["id"], "echo $TEAM") == "blue"

            # Different credential: not the warm one either.
            credential = client.post("/api/credentials", json={"type": "anthropic", "key": SESSION_KEY}).json()
            with_key = client.post(
                "/api/sessions", json={"agent": "warm", "credentialId": credential["credential"]["id"]}
            )
            assert with_key.status_code == 201, with_key.text
            assert with_key.json()["session"]["sandboxId"] not in warm_ids
            stats = pool(client)
            assert stats["warm"] == 1 and stats["preWarmHits"] == 0

            # The same agent and configuration: the warm sandbox, whose processes were all there before.
            before = sandbox_processes(server)
            (warm_id,) = warm_ids
            session = client.post("/api/sessions", json={"agent": "warm"}).json()["session"]
            assert session["sandboxId"] == warm_id and session["status"] == "active"
            after = sandbox_processes(server)
            assert after[warm_id] == before[warm_id]  # not one process started for this session
            assert pool(client)["preWarmHits"] == 1

            # It is this session's sandbox now: its id, its folder, its model traffic.
            sid = session["id"]
            assert exec_in(client, sid, "echo $ASH_SESSION_ID") == sid
            assert sid in exec_in(client, sid, "pwd")
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "hello warm"}) as r:
                assert "Hello from a warm sandbox." in "".join(r.iter_text())
            usage = client.get("/api/usage", params={"sessionId": sid}).json()["events"]
            assert usage and {u["sessionId"] for u in usage} == {sid}

            # The pool starts its replacement; a config change retires what no longer matches.
            wait_for(lambda: pool(client)["warm"] == 1, "the replacement warm sandbox")
            replacement = set(sandbox_processes(server)) - {
                env_session["sandboxId"],
                with_key.json()["session"]["sandboxId"],
                warm_id,
            }
            assert len(replacement) == 1
            assert client.patch("/api/agents/warm/config", json={"warmPoolSize": 0}).status_code == 200
            wait_for(lambda: pool(client)["warm"] == 0, "the warm pool to empty")
            wait_for(lambda: not replacement & set(sandbox_processes(server)), "the retired sandbox's processes to end")
            assert client.patch("/api/agents/warm/config", json={"warmPoolSize": -1}).status_code == 400
    finally:
        server.cleanup()


def cpu_share(pid: int) -> str:
    """The cgroup v1 cpu.shares of the process's cpu cgroup (this machine kind's hierarchy)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            mount = next(p for p in Path("/sys/fs/cgroup").iterdir() if "cpu" in p.name.split(","))
            return (mount / path.lstrip("/") / "cpu.shares").read_text().strip()
    raise AssertionError(f"process {pid} is in no cpu cgroup")


def test_the_default_keeps_one_warm_sandbox_per_recent_agent_starting_in_the_background(model: FakeAnthropic) -> None:
    model.on("hello default", text("Hello from the default warm pool."))
    server = AshServer(model.url)
    del server.env["ASH_WARM_POOL_SIZE"]  # the harness turns it off; a user's server has it on
    server.start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "fresh", "path": path}).status_code == 201
            wait_for(lambda: pool(client)["warm"] == 1, "the just-deployed agent's warm sandbox")
            ((warm_id, pids),) = sandbox_processes(server).items()
            assert {cpu_share(pid) for pid in pids} == {"2"}  # it started for nobody: the least CPU share

            session = client.post("/api/sessions", json={"agent": "fresh"}).json()["session"]
            assert session["sandboxId"] == warm_id and pool(client)["preWarmHits"] == 1
            assert {cpu_share(pid) for pid in sandbox_processes(server)[warm_id]} == {"1024"}  # a session's now
            with client.stream(
                "POST", f"/api/sessions/{session['id']}/messages", json={"content": "hello default"}
            ) as r:
                assert "Hello from the default warm pool." in "".join(r.iter_text())
            wait_for(lambda: pool(client)["warm"] == 1, "its replacement")
    finally:
        server.cleanup()
