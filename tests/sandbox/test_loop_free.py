"""Blocking work stays off the event loop (issue 16): a sandbox start over a 20,000-file workspace chowns every file,
and a fork copies them all; meanwhile the server keeps answering. /health is the probe: it does no work of its own,
so its latency is the loop's.

The 100 ms bound is the issue's acceptance figure for a blocked loop, not a performance target: a chown of 20,000
files on the loop took 453-864 ms here, and a loop that is free answers /health in a few milliseconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.sandbox.support import deploy
from tests.support.server import AshServer
from tests.support.sse import new_session

pytestmark = pytest.mark.slow

FILES = 20_000
LOOP_BOUND_S = 0.1


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    server = AshServer(fake_model.url).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def crowded(server: AshServer) -> Iterator[tuple[httpx.Client, str]]:
    """A session whose workspace holds FILES files, its sandbox stopped."""
    with server.client() as client:
        deploy(client, "crowded")
        session = new_session(client, "crowded")
        made = client.post(
            f"/api/sessions/{session['id']}/exec",
            json={"command": f"mkdir many && cd many && seq -f f%g {FILES} | xargs touch && ls | wc -l"},
        )
        assert made.status_code == 200 and made.json()["stdout"].strip() == str(FILES), made.text
        stopped = client.post(f"/api/sessions/{session['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        yield client, session["id"]


def health_latencies_during(
    server: AshServer, work: Callable[[], httpx.Response]
) -> tuple[httpx.Response, list[float]]:
    """Run `work` in a thread and probe /health back to back until it is done: (its response, each probe's s)."""
    result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: result.append(work()))
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=10) as probe:
        probe.get("/health").raise_for_status()  # the connection is open before the work starts
        worker.start()
        while worker.is_alive():
            started = time.perf_counter()
            probe.get("/health").raise_for_status()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    worker.join()
    return result[0], latencies


def test_health_answers_while_a_20000_file_workspace_sandbox_starts(
    server: AshServer, crowded: tuple[httpx.Client, str]
) -> None:
    client, session_id = crowded
    resumed, latencies = health_latencies_during(server, lambda: client.post(f"/api/sessions/{session_id}/resume"))
    assert resumed.status_code == 200, resumed.text
    assert len(latencies) >= 5, latencies  # the probes overlapped the start
    assert max(latencies) < LOOP_BOUND_S, f"slowest /health {max(latencies) * 1000:.0f} ms of {len(latencies)}"


def test_health_answers_while_a_20000_file_session_is_forked(
    server: AshServer, crowded: tuple[httpx.Client, str]
) -> None:
    client, session_id = crowded
    forked, latencies = health_latencies_during(server, lambda: client.post(f"/api/sessions/{session_id}/fork"))
    assert forked.status_code == 201, forked.text
    assert len(latencies) >= 5, latencies
    assert max(latencies) < LOOP_BOUND_S, f"slowest /health {max(latencies) * 1000:.0f} ms of {len(latencies)}"
    child = forked.json()["session"]["id"]
    assert client.post(f"/api/sessions/{child}/resume").status_code == 200
    listed = client.post(f"/api/sessions/{child}/exec", json={"command": "ls many | wc -l"})
    assert listed.status_code == 200 and listed.json()["stdout"].strip() == str(FILES), listed.text
