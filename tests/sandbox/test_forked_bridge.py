"""Bridges forked from the template (ASH_BRIDGE_START=fork, ADR 0012): the forked bridge runs in the sandbox's
namespaces and cgroups, as the sandbox user, with no capability in any set; only the server can ask the template
for one; a bridge that dies takes its sandbox with it and the session goes on; `exec` still starts bridges the old
way. (The isolation suites run on the default, whichever it is.) Real bubblewrap, the real CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ash_server.errors import SandboxError
from ash_server.sandbox.forking import BridgeTemplate, ForkingBwrapLauncher
from ash_server.sandbox.launcher import LaunchSpec
from ash_server.sandbox.limits import Limits
from ash_server.sandbox.limits.rlimit import RlimitBackend
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.sandbox.support import client_with_agents, deploy, running_server, turn
from tests.support.processes import pids_with_env
from tests.support.server import AshServer
from tests.support.sse import new_session

pytestmark = pytest.mark.slow

SANDBOX_UID = 65534
TEMPLATE = b"ash_bridge.template"


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    with running_server(fake_model.url, {"ASH_BRIDGE_START": "fork"}) as server:
        yield server


@pytest.fixture(scope="module")
def client(server: AshServer) -> Iterator[httpx.Client]:
    with client_with_agents(server, "forked") as c:
        yield c


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def bridge_of(sandbox_id: str) -> int:
    """The host pid of the sandbox's bridge: the template's fork in the sandbox's PID namespace."""
    outside = pids_with_env("ASH_SANDBOX_ID", sandbox_id)  # bubblewrap and its stub carry the sandbox's id
    assert outside, "the sandbox has processes"
    namespace = os.readlink(f"/proc/{outside[-1]}/ns/pid")
    found = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and TEMPLATE in _read(f"/proc/{p}/cmdline") and _ns(p) == namespace
    ]
    assert len(found) == 1, found
    return found[0]


def _ns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_the_forked_bridge_runs_in_the_sandbox_as_its_user_with_no_capability(client: httpx.Client) -> None:
    session = new_session(client, "forked")
    assert client.get("/health").json()["bridgeStart"] == "fork"  # forked, not fallen back to exec
    bridge = bridge_of(session["sandboxId"])
    found = status(bridge)
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert found[capabilities] == "0000000000000000", (capabilities, found)
    assert found["NoNewPrivs"] == "1" and found["Uid"].split()[0] == str(SANDBOX_UID)
    # The sandbox's cgroups (those of its stub, which bubblewrap's limits prefix put there), no other.
    stub = pids_with_env("ASH_SANDBOX_ID", session["sandboxId"])[-1]
    assert Path(f"/proc/{bridge}/cgroup").read_text() == Path(f"/proc/{stub}/cgroup").read_text()
    # Inside (where the agent's commands run): its own PID namespace, root and network; the bridge's parent is
    # outside the sandbox.
    command = (
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/.* -m ash_bridge.template' && "
        "echo bridge=${p#/proc/} $(grep PPid $p/status); done; "
        "echo root=$(ls / | tr '\\n' ' '); tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
    )
    inside = client.post(f"/api/sessions/{session['id']}/exec", json={"command": command}).json()["stdout"]
    assert re.search(r"^bridge=\d+ PPid:\s+0$", inside, flags=re.MULTILINE), inside
    root = inside.split("root=")[1].splitlines()[0].split()
    assert "home" not in root and "root" not in root and "boot" not in root, root
    assert inside.strip().splitlines()[-1] == "lo", inside  # no network but loopback


def test_only_the_server_can_ask_the_template_for_a_bridge(server: AshServer) -> None:
    sock = server.data_dir / "run" / "template.sock"
    assert sock.exists()
    probe = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')"
    as_sandbox_user = ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--"]
    result = subprocess.run(
        [*as_sandbox_user, sys.executable, "-I", "-c", probe, str(sock)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0 and "PermissionError" in result.stderr, (result.stdout, result.stderr)


def test_a_bridge_that_dies_ends_its_sandbox_and_the_session_goes_on(
    model: FakeAnthropic, client: httpx.Client
) -> None:
    session = new_session(client, "forked")
    sid, sandbox_id = session["id"], session["sandboxId"]
    model.on("before", text("noted"))
    assert turn(client, sid, "before").names[-1] == "done"
    os.kill(bridge_of(sandbox_id), signal.SIGKILL)
    deadline = time.monotonic() + 15
    while pids_with_env("ASH_SANDBOX_ID", sandbox_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with_env("ASH_SANDBOX_ID", sandbox_id) == []  # bubblewrap and its stub went with the bridge
    model.on("after", text("still here"))
    again = turn(client, sid, "after")
    assert "error" not in again.names, again.events
    moved = client.get(f"/api/sessions/{sid}").json()["session"]
    assert moved["status"] == "active" and moved["sandboxId"] != sandbox_id


def test_exec_still_starts_bridges_the_old_way(fake_model: FakeAnthropic) -> None:
    server = AshServer(fake_model.url, env={"ASH_BRIDGE_START": "exec"}).start()
    try:
        with server.client() as c:
            deploy(c, "started")
            session = new_session(c, "started")
            assert c.get("/health").json()["bridgeStart"] == "exec"
            assert not (server.data_dir / "run" / "template.sock").exists()
            fake_model.on("hello exec", text("Hello from a started bridge."))
            assert "Hello from a started bridge." in str(turn(c, session["id"], "hello exec").events)
    finally:
        server.cleanup()


async def test_limits_without_cgroups_start_the_bridge_the_exec_way(tmp_path: Path) -> None:
    """rlimit limits apply at exec: the forking launcher hands such a sandbox to bubblewrap's own start."""
    started: list[LaunchSpec] = []

    class Recording(ForkingBwrapLauncher):
        async def start_bwrap(self, spec: LaunchSpec, output: int | None = None) -> asyncio.subprocess.Process:
            started.append(spec)
            raise SandboxError("recorded")

    template = BridgeTemplate(tmp_path / "never.sock", None)  # never started: a fork would fail to reach it
    launcher = Recording(template)
    confinement = RlimitBackend(os.getuid()).confine("sbx-r", Limits(512, 50, 64, 100))
    spec = LaunchSpec(
        sandbox_id="sbx-r",
        argv=["/usr/bin/true"],
        env={},
        workspace=tmp_path,
        home=tmp_path,
        sandbox_dir=tmp_path,
        confinement=confinement,
    )
    with pytest.raises(SandboxError, match="recorded"):
        await launcher.launch(spec)
    assert [s.argv for s in started] == [["/usr/bin/true"]]  # the bridge's own argv, not the stub
    assert launcher.bridge_start == "fork"  # no fork was tried, so none failed
