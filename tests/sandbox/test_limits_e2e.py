"""A sandbox that breaks a limit (memory, processes, disk) ends its turn with an error that names the cause; the
session continues on a new sandbox and the server stays healthy. Under both runtimes (bubblewrap, gVisor): real
cgroups, the real CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import RUNTIMES, bash, client_with_agents, healthy, running_server
from tests.support.metrics import samples, total
from tests.support.processes import pids_with_env
from tests.support.server import AshServer
from tests.support.sse import new_session

pytestmark = pytest.mark.slow

# Small server limits keep the tests quick. The CLI itself takes ~300 MiB and a dozen threads.
SERVER_LIMITS = {
    "ASH_SANDBOX_MEMORY_MB": "512",
    "ASH_SANDBOX_MAX_PIDS": "128",
    "ASH_SANDBOX_DISK_MB": "64",
    "ASH_SANDBOX_DISK_INODES": "20000",
}


@pytest.fixture(scope="module", params=RUNTIMES)
def server(fake_model: FakeAnthropic, request: pytest.FixtureRequest) -> Iterator[AshServer]:
    with running_server(fake_model.url, {**SERVER_LIMITS, "ASH_SANDBOX_RUNTIME": request.param}) as server:
        yield server


@pytest.fixture(scope="module")
def client(server: AshServer) -> Iterator[httpx.Client]:
    with client_with_agents(server, "limited", ("tighter", {"limits": {"maxPids": 64, "diskMb": 32}})) as c:
        yield c


def assert_gone(sandbox_id: str) -> None:
    """Every process of the sandbox is gone (it takes the kernel a moment to reap a killed tree)."""
    deadline = time.monotonic() + 10
    while pids_with_env("ASH_SANDBOX_ID", sandbox_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_with_env("ASH_SANDBOX_ID", sandbox_id) == []


def assert_counted(client: httpx.Client, cause: str) -> None:
    """/metrics counts the sandbox's end under its cause (once the server has cleaned up after it)."""
    deadline = time.monotonic() + 10
    while not total(samples(client.get("/metrics").text), "ash_sandbox_failures_total", cause=cause):
        assert time.monotonic() < deadline, f"no sandbox failure counted with cause {cause}"
        time.sleep(0.05)


def assert_continues(model: FakeAnthropic, client: httpx.Client, session: dict[str, str]) -> None:
    """The session is still usable: its next message runs on a new sandbox."""
    result = bash(model, client, session["id"], f"still there {session['id']}", "echo alive")
    assert "alive" in result.tool_output and result.errors == []
    after = client.get(f"/api/sessions/{session['id']}").json()["session"]
    assert after["status"] == "active" and after["sandboxId"] != session["sandboxId"]


def test_memory_hog_is_killed_and_named(model: FakeAnthropic, server: AshServer, client: httpx.Client) -> None:
    session = new_session(client, "limited")
    result = bash(
        model, client, session["id"], "allocate a lot", "python3 -c 'b = bytearray(1536 << 20)'; echo status=$?"
    )
    assert any("sandbox ran out of memory (limit 512 MiB)" in e for e in result.errors), result.events
    assert_gone(session["sandboxId"])  # the whole sandbox, not just the hog
    healthy(server)
    assert_counted(client, "oom")
    assert_continues(model, client, session)


def test_fork_bomb_hits_the_process_limit(model: FakeAnthropic, server: AshServer, client: httpx.Client) -> None:
    session = new_session(client, "tighter")
    result = bash(model, client, session["id"], "fork a lot", "bomb() { bomb | bomb & }; bomb; sleep 30")
    assert any("process limit (64 processes and threads)" in e for e in result.errors), result.events
    assert_gone(session["sandboxId"])
    healthy(server)
    assert_counted(client, "pids")
    assert_continues(model, client, session)


def test_writing_past_the_disk_quota(model: FakeAnthropic, server: AshServer, client: httpx.Client) -> None:
    session = new_session(client, "limited")
    result = bash(
        model,
        client,
        session["id"],
        "fill the disk",
        # One file cannot outgrow the quota at all (RLIMIT_FSIZE); several together trip the watch.
        "head -c 100M /dev/zero > one; echo one=$?; for i in 1 2 3; do head -c 30M /dev/zero > part$i; done; ls",
    )
    assert any("exceeded its disk quota" in e and "limit 64 MiB" in e for e in result.errors), result.events
    if "one=" in result.tool_output:  # unless the watch stopped the sandbox before the command finished
        assert "one=153" in result.tool_output  # 128 + SIGXFSZ: the single file could not outgrow the quota
    assert_gone(session["sandboxId"])
    healthy(server)
    assert_counted(client, "disk")
    # Over its quota, a new sandbox may still run, to clean up, but not grow.
    cleaned = bash(model, client, session["id"], "clean up", "rm -f one part*; echo cleaned")
    assert "cleaned" in cleaned.tool_output and cleaned.errors == []


def test_200000_empty_files_break_the_file_count_quota(
    model: FakeAnthropic, server: AshServer, client: httpx.Client
) -> None:
    """Empty files take no space, so the byte quota never sees them; the file count quota does."""
    session = new_session(client, "limited")
    result = bash(
        model, client, session["id"], "make many files", "mkdir many; cd many; seq 200000 | xargs touch; sleep 30"
    )
    assert any("exceeded its file count quota" in e and "limit 20000" in e for e in result.errors), result.events
    assert_gone(session["sandboxId"])
    healthy(server)
    assert_counted(client, "disk")
    cleaned = bash(model, client, session["id"], "clean up the files", "rm -rf many; echo cleaned")
    assert "cleaned" in cleaned.tool_output and cleaned.errors == []


def test_agent_limits_are_validated_and_capped_by_the_server(client: httpx.Client) -> None:
    bad_limits: list[object] = [{"memoryMb": "lots"}, {"maxPids": 4}, {"cpuPercent": 0}, {"swapMb": 10}, []]
    for bad in [*bad_limits, {"memoryMb": 4096}]:
        response = client.patch("/api/agents/limited/config", json={"limits": bad})
        assert response.status_code == 400, (bad, response.text)
    assert "ASH_SANDBOX" in client.patch("/api/agents/limited/config", json={"limits": {"diskMb": 65}}).text
    assert client.get("/api/agents/limited/config").json()["config"].get("limits") is None
