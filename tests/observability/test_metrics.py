"""/metrics after a turn: request counters and latency histograms, turn, create and resume histograms, sandbox
starts, gateway tokens, pool gauges; auth enforced. (Sandbox failures by cause: tests/e2e/test_sandbox_failures.py
and tests/sandbox/test_limits_e2e.py.)"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.metrics import samples, total
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow


def test_metrics_after_a_turn(model: FakeAnthropic) -> None:
    model.on("measure me", text("measured"))
    server = AshServer(model.url, env={"ASH_METRICS_TOKEN": "scraper-token-0123456789abcdef"}).start()
    try:
        assert httpx.get(server.url + "/metrics").status_code == 401
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "metered", "path": path}).status_code == 201
            sid = client.post("/api/sessions", json={"agent": "metered"}).json()["session"]["id"]
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "measure me"}) as r:
                assert "event: done" in "".join(r.iter_text())
            assert client.post(f"/api/sessions/{sid}/pause").status_code == 200
            assert client.post(f"/api/sessions/{sid}/resume").status_code == 200
            assert client.get("/api/agents/nope").status_code == 404
            # The gateway records a call's usage once its response has been relayed, off the turn's path.
            deadline = time.monotonic() + 10
            while not total(samples(client.get("/metrics").text), "ash_gateway_tokens_total", kind="output"):
                assert time.monotonic() < deadline, "no gateway tokens counted"
                time.sleep(0.05)
            by_key = client.get("/metrics")
        by_token = httpx.get(
            server.url + "/metrics", headers={"Authorization": "Bearer scraper-token-0123456789abcdef"}
        )
        assert by_key.status_code == by_token.status_code == 200
        found = samples(by_token.text)
        assert (
            found[("ash_http_requests_total", (("method", "POST"), ("route", "/api/sessions"), ("status", "201")))] == 1
        )
        assert (
            found[("ash_http_requests_total", (("method", "GET"), ("route", "/api/agents/{name}"), ("status", "404")))]
            == 1
        )
        message_route = (("method", "POST"), ("route", "/api/sessions/{session_id}/messages"))
        assert found[("ash_http_request_duration_seconds_count", message_route)] == 1
        assert found[("ash_turn_duration_seconds_count", ())] == 1
        assert found[("ash_turn_first_event_seconds_count", ())] == 1
        assert found[("ash_session_create_seconds_count", (("path", "cold"),))] == 1
        assert found[("ash_session_resume_seconds_count", (("path", "warm"),))] == 1
        assert found[("ash_sandbox_starts_total", ())] == 1
        assert total(found, "ash_sandbox_failures_total") == 0
        assert total(found, "ash_gateway_tokens_total", kind="input") > 0
        assert total(found, "ash_gateway_tokens_total", kind="output") > 0
        # The session's sandbox is idle between turns: waiting, not running (sandbox/pool.py).
        assert found[("ash_pool_sandboxes", (("state", "waiting"),))] == 1
        assert found[("ash_pool_sandboxes", (("state", "running"),))] == 0
        # Raw paths (with ids) never become label values: cardinality stays bounded.
        assert sid not in by_token.text
    finally:
        server.cleanup()
