"""gVisor as a sandbox runtime (ASH_SANDBOX_RUNTIME=gvisor): a real chat through the fake model, the real CLI
under runsc, and the runtime shown where an operator looks for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import bash, client_with_agents, healthy, running_server
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
