"""gVisor as a sandbox runtime (ASH_SANDBOX_RUNTIME=gvisor): a real chat through the fake model, the real CLI
under runsc, and the runtime shown where an operator looks for it."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import bash, client_with_agents, deploy, healthy, running_server
from tests.support.server import AshServer
from tests.support.sse import new_session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    with running_server(fake_model.url, {"ASH_SANDBOX_RUNTIME": "gvisor"}) as server:
        yield server


@pytest.fixture(scope="module")
def client(server: AshServer) -> Iterator[httpx.Client]:
    with client_with_agents(server, "visor") as c:
        yield c


def test_health_reports_gvisor_and_bwrap(server: AshServer) -> None:
    health = healthy(server)
    assert health["isolation"] == "gvisor"
    assert health["runtimes"]["gvisor"] == {"available": True, "reason": None}
    assert set(health["runtimes"]) == {"bwrap", "gvisor"}


def test_a_chat_runs_its_tools_under_gvisor(model: FakeAnthropic, client: httpx.Client) -> None:
    session = new_session(client, "visor")
    out = bash(model, client, session["id"], "who are you", "id -u; uname -a; dmesg 2>&1 | head -3; pwd").tool_output
    lines = out.splitlines()
    assert lines[0] == "65534", out
    # gVisor's own kernel answers: not the host's kernel release, and its boot log is gVisor's.
    assert "gVisor" in out, out
    assert session["id"] in lines[-1]


def test_an_agent_may_ask_for_bubblewrap_on_a_gvisor_server(model: FakeAnthropic, client: httpx.Client) -> None:
    deploy(client, "walled", {"runtime": "bwrap"})
    session = new_session(client, "walled")
    out = bash(model, client, session["id"], "and you", "id -u; dmesg 2>&1 | head -3; uname -r").tool_output
    assert out.splitlines()[0] == "65534", out
    assert "gVisor" not in out
    assert out.splitlines()[-1] == platform.release()  # the host's own kernel


@pytest.fixture(scope="module")
def plain_server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    """No isolation at all, and every tenant held to gVisor: nothing it may run."""
    env = {"ASH_SANDBOX_ISOLATION": "none", "ASH_TENANT_RUNTIMES": "*=gvisor"}
    with running_server(fake_model.url, env) as server:
        yield server


def test_a_runtime_the_server_cannot_run_is_refused_with_the_reason(plain_server: AshServer) -> None:
    health = healthy(plain_server)
    assert health["isolation"] == "none"
    for name in ("bwrap", "gvisor"):
        assert health["runtimes"][name]["available"] is False
        assert "ASH_SANDBOX_ISOLATION=none" in health["runtimes"][name]["reason"]
    with client_with_agents(plain_server, "held") as client:
        refused = client.patch("/api/agents/held/config", json={"runtime": "bwrap"})
        assert refused.status_code == 400
        assert "under gvisor only" in refused.json()["error"]
        refused = client.patch("/api/agents/held/config", json={"runtime": "gvisor"})
        assert refused.status_code == 400
        assert "cannot run on this server" in refused.json()["error"]
        assert "ASH_SANDBOX_ISOLATION=none" in refused.json()["error"]
        refused = client.patch("/api/agents/held/config", json={"runtime": "kata"})
        assert refused.status_code == 400 and "one of bwrap, gvisor" in refused.json()["error"]
        assert "runtime" not in client.get("/api/agents/held/config").json()["config"]
        # The agent asks for nothing, but its tenant is held to gVisor, which cannot run here.
        created = client.post("/api/sessions", json={"agent": "held"})
        assert created.status_code == 400, created.text
        assert "cannot run on this server" in created.json()["error"]
