"""Agent code cannot read the host's secrets, other sessions or the server's data, nor reach the network, and
nothing it starts outlives its sandbox. Under both runtimes (bubblewrap, gVisor): real sandboxes, real cgroups, the
real CLI through the fake model."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import RUNTIMES, bash, client_with_agents, healthy, inside_commands, running_server, turn
from tests.support.processes import pids_with_env
from tests.support.server import AshServer
from tests.support.sse import new_session

pytestmark = pytest.mark.slow

HOST_SECRET = "host-secret-4f1d9c7e2b"


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic, runtime: str) -> Iterator[AshServer]:
    env = {"ASH_TEST_HOST_SECRET": HOST_SECRET, "ASH_SANDBOX_RUNTIME": runtime}
    with running_server(fake_model.url, env) as server:
        yield server


@pytest.fixture(scope="module")
def client(server: AshServer) -> Iterator[httpx.Client]:
    with client_with_agents(server, "prober") as c:
        yield c


@pytest.fixture(scope="module")
def bystander(client: httpx.Client) -> dict[str, str]:
    """Another session of the same tenant, whose files the prober tries to reach."""
    session = new_session(client, "prober")
    return session


@pytest.fixture(scope="module")
def prober(client: httpx.Client, bystander: dict[str, str]) -> dict[str, str]:
    return new_session(client, "prober")


def listed_missing(out: str, path: str) -> bool:
    """`ls PATH` said there is no such file: coreutils' words (bubblewrap) or busybox's (gVisor, oci.COMPAT_BIN)."""
    return f"ls: cannot access '{path}': No such file or directory" in out or f"ls: {path}: No such file" in out


def workspace(server: AshServer, session: dict[str, str]) -> Path:
    return server.data_dir / "sessions" / "default" / session["id"] / "workspace"


def test_health_reports_the_isolation_in_force(server: AshServer, runtime: str) -> None:
    health = healthy(server)
    assert health["isolation"] == runtime
    assert health["network"] == "none"
    assert health["limits"] == "cgroup-v1"  # what these machines have: v1 controllers, v2 without any


def test_host_environment_and_process_table_are_out_of_sight(
    model: FakeAnthropic, client: httpx.Client, prober: dict[str, str], runtime: str
) -> None:
    out = bash(
        model,
        client,
        prober["id"],
        "show me the environment",
        "env; echo ==; tr '\\0' '\\n' < /proc/1/environ; echo ==; cat /proc/*/environ /proc/*/cmdline | tr '\\0' ' ';"
        " echo; echo ==; ls /proc | grep -c '^[0-9]'",
    ).tool_output
    assert "ASH_WORKSPACE_DIR=" in out  # the command really ran
    assert HOST_SECRET not in out
    assert "ASH_TEST_HOST_SECRET" not in out
    assert "ASH_DATA_DIR" not in out and "ASH_PORT" not in out
    environ_of_pid_1 = out.split("==")[1].split()
    if runtime == "bwrap":
        # /proc/1 is the sandbox's own init (bwrap), whose environment holds nothing but the sandbox id.
        assert sorted(v.split("=")[0] for v in environ_of_pid_1) == ["ASH_SANDBOX_ID", "PATH", "PWD"]
    else:
        # /proc/1 is the sandbox's init (tini, then the bridge), with the sandbox's own environment.
        assert f"ASH_SANDBOX_ID={prober['sandboxId']}" in environ_of_pid_1
    assert int(out.split("==")[-1].strip()) < 20  # its own PID namespace: a handful of processes, not the host's


def test_root_the_data_dir_and_other_sessions_are_invisible(
    model: FakeAnthropic,
    server: AshServer,
    client: httpx.Client,
    prober: dict[str, str],
    bystander: dict[str, str],
    runtime: str,
) -> None:
    data, other = server.data_dir, workspace(server, bystander)
    assert (other / "CLAUDE.md").is_file()
    out = bash(
        model,
        client,
        prober["id"],
        "look around the host",
        f"ls -a /root; ls -a {data}; cat {data}/ash.db {data}/api-key {data}/secret-key; ls {data}/agents;"
        f" ls {data}/sessions/default; cat {other}/CLAUDE.md; ls {other}; cat /etc/shadow; ls /sys;"
        f" ls {data}/sandboxes; echo END",
    ).tool_output
    assert out.rstrip().endswith("END")
    assert listed_missing(out, "/root")
    for name in ("ash.db", "api-key", "secret-key"):
        assert f"{data}/{name}: No such file or directory" in out, name
    assert listed_missing(out, f"{data}/agents")
    assert listed_missing(out, str(other)) and bystander["id"] not in out.replace(str(other), "")
    assert "You are a test agent" not in out  # the other session's CLAUDE.md
    assert "/etc/shadow: No such file or directory" in out
    if runtime == "bwrap":
        assert listed_missing(out, "/sys")
    # gVisor always gives a sandbox a /sys: its own kernel's, made up, nothing of the host's.
    api_key = (data / "api-key").read_text().strip()
    assert api_key not in out


def test_no_network_but_its_own_loopback(
    model: FakeAnthropic, server: AshServer, client: httpx.Client, prober: dict[str, str]
) -> None:
    probes = {
        "server": f"127.0.0.1/{server.port}",
        "postgres": "127.0.0.1/5432",
        "outside-dns": "1.1.1.1/53",
        "outside-private": "10.0.0.1/80",
    }
    command = "; ".join(
        f"timeout 20 bash -c 'echo > /dev/tcp/{target}' 2>/dev/null && echo {name}=open || echo {name}=closed"
        for name, target in probes.items()
    )
    command += "; ip -o link | awk '{print $2}' | tr '\\n' ' '; echo; getent hosts example.com || echo dns=none"
    out = bash(model, client, prober["id"], "try the network", command).tool_output
    for name in probes:
        assert f"{name}=closed" in out, out
    assert "lo:" in out and "eth0" not in out
    assert "dns=none" in out


def test_setuid_programs_give_no_privilege(model: FakeAnthropic, client: httpx.Client, prober: dict[str, str]) -> None:
    out = bash(
        model,
        client,
        prober["id"],
        "try the setuid programs",
        # `command`: GNU find (the CLI's own `find`, bfs, cannot stat under gVisor: docs/security.md).
        "command find /usr/bin/mount /usr/bin/passwd -perm -4000; mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1;"
        " echo mount=$?; su root -c id </dev/null 2>&1; echo su=$?; grep '^Uid' /proc/self/status",
    ).tool_output
    assert "/usr/bin/mount" in out and "/usr/bin/passwd" in out  # the setuid bit is there, and buys nothing
    assert "mount=" in out and "mount=0" not in out
    assert "su=" in out and "su=0" not in out
    assert re.search(r"Uid:\s+65534\s+65534\s+65534\s+65534", out), out


def test_files_api_does_not_follow_symlinks_out_of_the_workspace(
    model: FakeAnthropic, server: AshServer, client: httpx.Client, prober: dict[str, str], bystander: dict[str, str]
) -> None:
    data, other = server.data_dir, workspace(server, bystander)
    sid = prober["id"]
    out = bash(
        model,
        client,
        sid,
        "plant some symlinks",
        f"ln -s /etc/passwd passwd && ln -s {data} data && ln -s {data}/ash.db db && ln -s {other} neighbour"
        " && ln -s ../../../../.. up && mkdir -p sub && ln -s ../CLAUDE.md sub/inside && echo planted",
    ).tool_output
    assert "planted" in out
    for path in ("passwd", "data/ash.db", "data/api-key", "db", "neighbour/CLAUDE.md", "up/etc/hostname"):
        response = client.get(f"/api/sessions/{sid}/files/{path}")
        assert response.status_code == 400, (path, response.status_code, response.text)
        assert "escapes" in response.json()["error"]
        assert client.get(f"/api/sessions/{sid}/files/{path}", params={"format": "json"}).status_code == 400
    for path in ("..%2F..%2F..%2Fash.db", "/etc/passwd", "%2Fetc%2Fpasswd"):
        assert client.get(f"/api/sessions/{sid}/files/{path}").status_code in (400, 404), path
    # A symlink that stays inside is fine, and the listing shows regular files only.
    assert client.get(f"/api/sessions/{sid}/files/sub/inside").content == b"You are a test agent."
    listed = {f["path"] for f in client.get(f"/api/sessions/{sid}/files").json()["files"]}
    assert "CLAUDE.md" in listed and not listed & {"passwd", "data", "db", "neighbour", "up", "sub/inside"}
    assert client.get(f"/api/sessions/{bystander['id']}/files/CLAUDE.md").status_code == 200


def test_background_processes_die_with_the_sandbox(
    model: FakeAnthropic, server: AshServer, client: httpx.Client, bystander: dict[str, str]
) -> None:
    session = new_session(client, "prober")
    sid, sandbox_id = session["id"], session["sandboxId"]
    out = bash(
        model,
        client,
        sid,
        "leave something running",
        "(setsid sleep 1001 >/dev/null 2>&1 &); nohup sleep 1002 >/dev/null 2>&1 & disown; echo started",
    ).tool_output
    assert "started" in out

    def sleepers() -> list[str]:
        return [c for c in inside_commands(server, sandbox_id) if "sleep" in c]

    assert len(sleepers()) == 2  # the turn is over and they still run: in the sandbox
    assert client.post(f"/api/sessions/{sid}/stop").status_code == 200
    deadline = time.monotonic() + 10
    while pids_with_env("ASH_SANDBOX_ID", sandbox_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with_env("ASH_SANDBOX_ID", sandbox_id) == []
    assert sleepers() == []
    assert client.get(f"/api/sessions/{bystander['id']}").json()["session"]["status"] == "active"


def test_the_server_and_other_sessions_are_unaffected(
    model: FakeAnthropic, server: AshServer, client: httpx.Client, bystander: dict[str, str]
) -> None:
    healthy(server)
    assert (workspace(server, bystander) / "CLAUDE.md").read_text() == "You are a test agent."
    assert "still fine" in bash(model, client, bystander["id"], "are you fine", "echo still fine").tool_output
    assert turn(client, bystander["id"], "one more").errors == []
