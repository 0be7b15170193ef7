"""POST /api/sessions/{id}/exec runs inside the session's sandbox: same namespaces (or gVisor kernel), user and limits
as its agent. Under both runtimes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import RUNTIMES, bash, client_with_agents, healthy, inside_commands, running_server
from tests.support.bytecode import IMPORTS_IN_SANDBOX, check_bridge_bytecode
from tests.support.server import AshServer
from tests.support.sse import new_session
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=RUNTIMES)
def server(fake_model: FakeAnthropic, request: pytest.FixtureRequest) -> Iterator[AshServer]:
    env = {"ASH_EXEC_MAX_TIMEOUT_MS": "5000", "ASH_SANDBOX_RUNTIME": request.param}
    with running_server(fake_model.url, env) as server:
        yield server


@pytest.fixture(scope="module")
def client(server: AshServer) -> Iterator[httpx.Client]:
    with client_with_agents(server, "execer") as c:
        yield c


@pytest.fixture(scope="module")
def session(client: httpx.Client) -> dict[str, str]:
    return new_session(client, "execer")


def run(client: httpx.Client, session_id: str, command: str, **extra: int) -> dict[str, object]:
    response = client.post(f"/api/sessions/{session_id}/exec", json={"command": command, **extra})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_exit_code_and_both_streams(client: httpx.Client, session: dict[str, str]) -> None:
    result = run(client, session["id"], "pwd; echo oops >&2; exit 3")
    assert result["exitCode"] == 3 and result["timedOut"] is False and result["truncated"] is False
    assert str(result["stdout"]).strip().endswith(f"/sessions/default/{session['id']}/workspace")
    assert result["stderr"] == "oops\n"


def test_runs_in_the_agents_sandbox(
    model: FakeAnthropic, server: AshServer, client: httpx.Client, session: dict[str, str]
) -> None:
    bash(model, client, session["id"], "leave a note", "echo from-the-agent > /tmp/note; echo ok")
    result = run(client, session["id"], "id -un; cat /tmp/note; hostname; ls /proc | grep -c '^[0-9]'; ls /root")
    lines = str(result["stdout"]).split()
    assert lines[:3] == ["sandbox", "from-the-agent", "sandbox"]  # its user, its private /tmp, its UTS namespace
    assert int(lines[3]) < 20  # its PID namespace
    assert "No such file or directory" in str(result["stderr"])
    net = run(client, session["id"], "timeout 10 bash -c 'echo > /dev/tcp/1.1.1.1/53' 2>&1; echo net=$?")
    assert "net=1" in str(net["stdout"])
    # No capability in any set, not even the bounding set the sandbox's user namespace would otherwise leave full.
    caps = run(client, session["id"], "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status")
    sets = 5 if server.env["ASH_SANDBOX_RUNTIME"] == "bwrap" else 4  # gVisor's kernel shows no CapAmb line
    assert [line.split()[1] for line in str(caps["stdout"]).splitlines()] == ["0000000000000000"] * sets, caps


def test_timeout_and_output_cap(server: AshServer, client: httpx.Client, session: dict[str, str]) -> None:
    slow = run(client, session["id"], "echo started; sleep 61 & sleep 60", timeout=1000)
    assert slow["exitCode"] == 124 and slow["timedOut"] is True and slow["stdout"] == "started\n"
    # Nothing it started is left running in the sandbox (under gVisor, killing `runsc exec` alone would leave it).
    sandbox_id = client.get(f"/api/sessions/{session['id']}").json()["session"]["sandboxId"]
    wait_for(lambda: not [c for c in inside_commands(server, sandbox_id) if "sleep" in c], "the sleeps to die", 10)
    big = run(client, session["id"], "head -c 3000000 /dev/zero | tr '\\0' x")
    assert big["truncated"] is True and len(str(big["stdout"])) == 1024 * 1024
    healthy(server)


def test_refusals(client: httpx.Client, session: dict[str, str]) -> None:
    url = f"/api/sessions/{session['id']}/exec"
    assert client.post(f"/api/sessions/{uuid.uuid4()}/exec", json={"command": "true"}).status_code == 404
    assert client.post(url, json={"command": ""}).status_code == 400
    assert client.post(url, json={"command": "true", "timeout": 6000}).status_code == 400  # above the max
    stopped = new_session(client, "execer")
    assert client.post(f"/api/sessions/{stopped['id']}/stop").status_code == 200
    response = client.post(f"/api/sessions/{stopped['id']}/exec", json={"command": "true"})
    assert response.status_code == 400 and "no running sandbox" in response.json()["error"]


def test_the_bridge_and_the_sdk_load_from_the_installs_bytecode(client: httpx.Client, session: dict[str, str]) -> None:
    # scripts/install.sh built this virtualenv; the sandbox user can write no cache, so a missing .pyc would be
    # compiled again at every sandbox start.
    check_bridge_bytecode(run(client, session["id"], IMPORTS_IN_SANDBOX, timeout=5000))
