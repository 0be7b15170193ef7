"""The server as a dedicated non-root user (ADR 0008): started the way systemd/ash.service starts it (its own uid,
the capability set of the unit as ambient and bounding sets), it still switches every sandbox to the sandbox uid,
and the sandbox's processes hold no capability at all. Files stay where ADR 0007 put them: the database and keys
0600 to the server's user, session folders to the sandbox user, and an escaped sandbox (its uid on the host) can
read none of the former. Real bubblewrap, the real CLI through the fake model."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.sandbox.support import bash, healthy, turn
from tests.support.processes import pids_with_env
from tests.support.server import REPO, AshServer, short_tempdir
from tests.support.sse import new_session

pytestmark = pytest.mark.slow

SERVER_USER = "ash-test-srv"
SANDBOX_UID = 65534  # the default when the server can switch users
# The unit's AmbientCapabilities= / CapabilityBoundingSet= (systemd/ash.service), in setpriv's spelling.
SERVER_CAPS = ("chown", "dac_override", "fowner", "kill", "setgid", "setuid")
SERVER_CAP_MASK = 0xEB


def unit_capabilities() -> tuple[str, ...]:
    """The capability names systemd/ash.service grants (lower case, without CAP_)."""
    unit = (REPO / "systemd/ash.service").read_text()
    ambient = re.search(r"^AmbientCapabilities=(.*)$", unit, flags=re.MULTILINE)
    assert ambient, "the unit grants ambient capabilities"
    return tuple(sorted(name.removeprefix("CAP_").lower() for name in ambient.group(1).split()))


def server_user() -> tuple[int, int]:
    """uid and gid of a system user for the server, created if this machine does not have it yet."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.skip("needs root, setpriv and useradd (to start the server as another user)")
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                *("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"),
                *("--shell", "/usr/sbin/nologin", "--comment", "Ash tests, a non-root server", SERVER_USER),
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def as_server_user(uid: int, gid: int, caps: tuple[str, ...]) -> list[str]:
    """What systemd does for `User=` `Group=` `AmbientCapabilities=` `CapabilityBoundingSet=`, with setpriv."""
    keep = "-all" + "".join(f",+{cap}" for cap in caps)
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        f"--bounding-set={keep}",
        f"--inh-caps={keep}",
        f"--ambient-caps={keep}",
        "--",
    ]


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def as_sandbox_user(*argv: str) -> subprocess.CompletedProcess[str]:
    """`argv` run on the host as the sandbox's uid, as a sandbox that got out of its namespaces would."""
    drop = ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups"]
    return subprocess.run(
        [*drop, "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


@dataclass
class NonRootServer:
    server: AshServer
    uid: int
    gid: int


@pytest.fixture(scope="module")
def nonroot(fake_model: FakeAnthropic) -> Iterator[NonRootServer]:
    uid, gid = server_user()
    root = short_tempdir()  # /tmp/ash-*, 0755: the sandbox user can traverse it to its session folders
    data = root / "data"
    data.mkdir(mode=0o700)
    os.chown(data, uid, gid)  # what StateDirectory= (systemd) and the Ansible role give the server
    server = AshServer(
        fake_model.url,
        data_dir=data,
        env={"HOME": str(data)},  # systemd sets HOME from the user's entry: the data dir for the role's `ash`
        argv_prefix=as_server_user(uid, gid, unit_capabilities()),
    )
    try:
        server.start()
        yield NonRootServer(server, uid, gid)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(nonroot: NonRootServer) -> Iterator[httpx.Client]:
    with nonroot.server.client() as c:
        path = str(REPO / "examples" / "hello-agent")
        response = c.post("/api/agents", json={"name": "hello-agent", "path": path})
        assert response.status_code == 201, response.text
        yield c


def test_the_unit_grants_the_measured_capabilities() -> None:
    assert unit_capabilities() == SERVER_CAPS


def test_the_server_is_not_root_and_holds_only_its_capabilities(nonroot: NonRootServer) -> None:
    assert nonroot.server.process is not None
    proc = status(nonroot.server.process.pid)  # setpriv exec'd the server: same pid
    assert proc["Uid"].split() == [str(nonroot.uid)] * 4
    assert proc["Gid"].split() == [str(nonroot.gid)] * 4
    assert nonroot.uid != 0
    for name in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
        assert int(proc[name], 16) == SERVER_CAP_MASK, (name, proc[name])
    health = healthy(nonroot.server)
    assert health["isolation"] == "bwrap"


def test_a_turn_runs_as_the_sandbox_user_with_no_capabilities(
    nonroot: NonRootServer, client: httpx.Client, model: FakeAnthropic
) -> None:
    model.on("hi", text("hello"))
    session = new_session(client, "hello-agent")
    result = turn(client, session["id"], "hi")
    assert not result.errors, result.errors
    assert "hello" in str(result.events)

    # The sandbox stays up between turns: every process in it, from bwrap outside the namespaces to the CLI.
    pids = pids_with_env("ASH_SANDBOX_ID", session["sandboxId"])
    assert len(pids) >= 2, pids
    for pid in pids:
        proc = status(pid)
        assert proc["Uid"].split() == [str(SANDBOX_UID)] * 4, (pid, proc["Name"], proc["Uid"])
        assert proc["Gid"].split() == [str(SANDBOX_UID)] * 4, (pid, proc["Name"], proc["Gid"])
        assert proc["Groups"] == "", (pid, proc["Name"], proc["Groups"])
        for name in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert int(proc[name], 16) == 0, (pid, proc["Name"], name, proc[name])
        assert proc["NoNewPrivs"] == "1"


def test_files_belong_to_whom_they_should(nonroot: NonRootServer, client: httpx.Client) -> None:
    data = nonroot.server.data_dir
    for name in ("ash.db", "secret-key", "api-key"):
        st = (data / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nonroot.uid, 0o600), name
    session = new_session(client, "hello-agent")
    folder = data / "sessions" / "default" / session["id"]
    for path in (folder, folder / "workspace", folder / "home", folder / "workspace" / "CLAUDE.md"):
        assert path.stat().st_uid == SANDBOX_UID, path
    sandbox_dir = data / "sandboxes" / "default" / session["sandboxId"]
    assert (sandbox_dir / "bridge.sock").stat().st_uid == SANDBOX_UID
    assert sandbox_dir.stat().st_uid == SANDBOX_UID


def test_the_sandbox_user_cannot_reach_the_server_s_secrets_nor_signal_it(
    nonroot: NonRootServer, client: httpx.Client, model: FakeAnthropic
) -> None:
    data = nonroot.server.data_dir
    session = new_session(client, "hello-agent")
    # From inside: the data dir is not even there.
    out = bash(model, client, session["id"], "read the database", f"cat {data}/ash.db {data}/secret-key; id -u")
    assert "No such file or directory" in out.tool_output and str(SANDBOX_UID) in out.tool_output
    # From outside, as if it had escaped its namespaces: the server's files and process are another user's.
    for name in ("ash.db", "secret-key", "api-key"):
        result = as_sandbox_user("cat", str(data / name))
        assert result.returncode != 0 and "Permission denied" in result.stderr, (name, result)
    assert nonroot.server.process is not None
    result = as_sandbox_user("kill", "-0", str(nonroot.server.process.pid))
    assert result.returncode != 0 and "Operation not permitted" in result.stderr, result


def test_a_server_missing_part_of_the_set_refuses_to_start_and_says_why(fake_model: FakeAnthropic) -> None:
    """Measured: without CAP_KILL the server cannot stop a sandbox that breaks its limits (without CHOWN,
    DAC_OVERRIDE or FOWNER it fails on its first sandbox folder), so it refuses to start, naming what is missing."""
    uid, gid = server_user()
    root = short_tempdir()
    data = root / "data"
    data.mkdir(mode=0o700)
    os.chown(data, uid, gid)
    without_kill = tuple(cap for cap in SERVER_CAPS if cap != "kill")
    server = AshServer(fake_model.url, data_dir=data, argv_prefix=as_server_user(uid, gid, without_kill))
    try:
        with pytest.raises(RuntimeError) as failed:
            server.start(timeout=30)
        assert f"the server (uid {uid}) can switch sandboxes to uid {SANDBOX_UID} but lacks CAP_KILL" in str(
            failed.value
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
