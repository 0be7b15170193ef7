"""kill -9 in the middle of a turn, and SIGTERM with a turn running: afterwards the state is consistent, nothing
acknowledged is lost, and no sandbox process is left behind."""

from __future__ import annotations

import tarfile
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

from ash_server.sandbox.limits import instance_name
from tests.fakes.anthropic_api import FakeAnthropic, echo, text
from tests.support.processes import pids_with_env
from tests.support.server import REPO, AshServer, short_tempdir
from tests.support.sse import events_of, turn_text
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def turn(client: httpx.Client, sid: str, prompt: str) -> str:
    return turn_text(client, sid, prompt, until_done=False)  # a turn the test may cut off


class Background:
    """A turn streamed by a thread of its own; `body` is what arrived before the stream ended (or broke)."""

    def __init__(self, server: AshServer, sid: str, prompt: str) -> None:
        self.body = ""
        self._thread = threading.Thread(target=self._run, args=(server, sid, prompt))
        self._thread.start()

    def _run(self, server: AshServer, sid: str, prompt: str) -> None:
        try:
            with server.client() as client:
                self.body = turn(client, sid, prompt)
        except httpx.HTTPError:
            pass  # the server went away

    def join(self) -> str:
        self._thread.join(timeout=120)
        return self.body


def setup_session(server: AshServer) -> dict[str, Any]:
    with server.client() as client:
        path = str(REPO / "examples" / "hello-agent")
        assert client.post("/api/agents", json={"name": "sturdy", "path": path}).status_code == 201
        session: dict[str, Any] = client.post("/api/sessions", json={"agent": "sturdy"}).json()["session"]
        assert "event: done" in turn(client, session["id"], "remember the number 7")
        return session


def cgroups_of(server: AshServer, sandbox_id: str) -> list[Path]:
    """The sandbox's cgroup folders, in every hierarchy (`<server's cgroup>/ash-<data dir hash>/<sandbox id>`)."""
    instance = instance_name(server.data_dir)
    return [p for p in Path("/sys/fs/cgroup").glob(f"**/{instance}/{sandbox_id}") if p.is_dir()]


def running(server: AshServer) -> bool:
    return bool(httpx.get(server.url + "/health", timeout=10).json()["pool"]["running"])


def test_kill_9_in_the_middle_of_a_turn(model: FakeAnthropic) -> None:
    model.on("remember the number", text("Seven it is."))
    model.on("long task", text("working " * 40, chunks=40, delay=0.5))
    model.on("what do you remember", echo())
    server = AshServer(model.url).start()
    try:
        session = setup_session(server)
        sid, sandbox_id = session["id"], session["sandboxId"]
        background = Background(server, sid, "a long task")
        wait_for(lambda: running(server), "the turn to run")
        by_cgroups = httpx.get(server.url + "/health").json()["limits"].startswith("cgroup")
        assert bool(cgroups_of(server, sandbox_id)) == by_cgroups
        server.kill()
        background.join()
        wait_for(lambda: not pids_with_env("ASH_SANDBOX_ID", sandbox_id), "the sandbox to die with the server", 15)

        server.start()
        with server.client() as client:
            after = client.get(f"/api/sessions/{sid}").json()["session"]
            assert (after["status"], after["sandboxId"]) == ("paused", "")
            # The acknowledged message (its stream had started) is there.
            messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
            assert [m["content"] for m in messages if m["role"] == "user"][-1].find("a long task") > 0
            # The pool table matches reality: nothing live, the session's sandbox is cold.
            stats = client.get("/health").json()["pool"]
            assert (stats["total"], stats["running"], stats["waiting"], stats["cold"]) == (0, 0, 0, 1)
            assert not pids_with_env("ASH_SANDBOX_ID", sandbox_id)
            assert not list((server.data_dir / "sandboxes").rglob("*.sock"))
            assert cgroups_of(server, sandbox_id) == []  # the restarted server removed the dead one's cgroups
            # The cut-off turn's replay ends as every turn does: an error saying what happened, then done.
            replay = events_of(client.get(f"/api/sessions/{sid}/stream", params={"lastEventId": 0}).text)
            names = [name for name, _ in replay]
            assert names.count("session_start") == names.count("done") == 2, names
            assert names[-2:] == ["error", "done"] and "cut off" in replay[-2][1]["error"], replay[-2:]
            # And the session goes on.
            assert client.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
            assert "event: done" in turn(client, sid, "what do you remember")
            seen = model.user_texts(model.requests_with_prompt("what do you remember")[-1])
            assert seen[0] == "remember the number 7" and seen[-1] == "what do you remember"
    finally:
        server.cleanup()


def latest_archive(snapshots: Path, sid: str) -> Path:
    archives = sorted((snapshots / "default" / sid).glob("*.tar.zst"), key=lambda p: p.stat().st_mtime)
    assert archives, "no snapshot was taken"
    return archives[-1]


def transcript_of(archive: Path) -> str:
    with (
        archive.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        texts = []
        for member in tar:
            if member.name.startswith("home/") and member.name.endswith(".jsonl"):
                texts.append(tar.extractfile(member).read().decode())  # type: ignore[union-attr]
        return "".join(texts)


def test_sigterm_drains_turns_and_persists_every_sandbox(model: FakeAnthropic) -> None:
    model.on("remember the number", text("Seven it is."))
    model.on("short task", text("finishing " * 10, chunks=10, delay=0.3))
    snapshots = short_tempdir() / "snapshots"
    server = AshServer(model.url, env={"ASH_SNAPSHOT_URL": f"file://{snapshots}"}).start()
    try:
        session = setup_session(server)
        sid, sandbox_id = session["id"], session["sandboxId"]
        background = Background(server, sid, "a short task")
        wait_for(lambda: running(server), "the turn to run")
        server.stop()  # SIGTERM
        body = background.join()
        assert "event: done" in body and "finishing" in body  # the turn finished before the server left
        assert "Application shutdown complete" in server.log()
        assert not pids_with_env("ASH_SANDBOX_ID", sandbox_id)
        assert "finishing" in transcript_of(latest_archive(snapshots, sid))  # persisted after that turn

        server.start()
        with server.client() as client:
            after = client.get(f"/api/sessions/{sid}").json()["session"]
            assert after["status"] == "paused"
            assert client.get("/health").json()["pool"]["cold"] == 1
            events = client.get(f"/api/sessions/{sid}/events", params={"type": "lifecycle"}).json()["events"]
            assert any("server shutting down" in (e.get("data") or "") for e in events), events
    finally:
        server.cleanup()
