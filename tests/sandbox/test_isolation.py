"""ASH_SANDBOX_ISOLATION: bubblewrap unless explicitly opted out; a server that cannot run it refuses to start."""

from __future__ import annotations

import os

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import bash, deploy, healthy
from tests.support.server import AshServer, short_tempdir
from tests.support.sse import new_session

pytestmark = pytest.mark.slow


def test_without_working_bwrap_the_server_refuses_to_start(model: FakeAnthropic) -> None:
    # What a locked-down container says when user namespaces are not allowed.
    fake = short_tempdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    path = f"{fake}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    for isolation in ("auto", "bwrap"):
        server = AshServer(model.url, env={"PATH": path, "ASH_SANDBOX_ISOLATION": isolation})
        try:
            with pytest.raises(RuntimeError) as failure:
                server.start()
            assert "setting up uid map: Permission denied" in str(failure.value)
            assert "ASH_SANDBOX_ISOLATION=none" in str(failure.value)
        finally:
            server.cleanup()


def test_isolation_none_is_an_explicit_opt_out(model: FakeAnthropic) -> None:
    server = AshServer(model.url, env={"ASH_SANDBOX_ISOLATION": "none", "ASH_SANDBOX_MAX_PIDS": "100"}).start()
    try:
        health = healthy(server)
        assert (health["isolation"], health["network"], health["limits"]) == ("none", "full", "cgroup-v1")
        with server.client() as client:
            deploy(client, "bare")
            session = new_session(client, "bare")
            # Limits still apply without namespaces: the sandbox is in its cgroup.
            out = bash(model, client, session["id"], "where am i", "grep pids /proc/self/cgroup")
            assert session["sandboxId"] in out.tool_output and out.errors == []
            exec_out = client.post(
                f"/api/sessions/{session['id']}/exec", json={"command": "cat /proc/self/cgroup | grep pids"}
            ).json()
            assert session["sandboxId"] in exec_out["stdout"]
    finally:
        server.cleanup()
