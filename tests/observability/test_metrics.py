"""/metrics after a turn: request counters and latency histograms, turn histograms, pool gauges; auth enforced."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


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
            assert client.get("/api/agents/nope").status_code == 404
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
        # The session's sandbox is idle between turns: waiting, not running (sandbox/pool.py).
        assert found[("ash_pool_sandboxes", (("state", "waiting"),))] == 1
        assert found[("ash_pool_sandboxes", (("state", "running"),))] == 0
        # Raw paths (with ids) never become label values: cardinality stays bounded.
        assert sid not in by_token.text
    finally:
        server.cleanup()
