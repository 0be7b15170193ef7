"""One coordinator deployment across machines: two coordinators on the host, runners in their own network
namespaces (own address, own data dir; files travel only through PostgreSQL and the S3 snapshot store)."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ash_server.cluster.signing import RequestSigner
from tests.cluster.conftest import LIVENESS_MS, RUNNER_PORT, Deployment, runners_of, stream
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

AGENT = str(REPO / "examples" / "hello-agent")


@pytest.fixture(scope="module")
def cluster(deployment: Deployment) -> Iterator[tuple[AshServer, AshServer, AshServer, AshServer]]:
    """Coordinators c1 and c2 (same database), runners `alpha` and `beta` registered with c1."""
    c1 = deployment.coordinator().start()
    c2 = deployment.coordinator().start()
    alpha = deployment.runner("alpha", c1).launch()
    beta = deployment.runner("beta", c1).launch()
    alpha.wait_healthy(), beta.wait_healthy()
    wait_for(lambda: {"alpha", "beta"} <= set(runners_of(c1)), "both runners registered", 30)
    with c1.client() as client:
        assert client.post("/api/agents", json={"name": "helper", "path": AGENT}).status_code == 201
    yield c1, c2, alpha, beta


def metric(body: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_runners_are_visible_in_the_api_health_metrics_and_cli(
    cluster: tuple[AshServer, ...], deployment: Deployment
) -> None:
    c1, c2, _, _ = cluster
    runners = runners_of(c2)  # the other coordinator sees them too: the registry is the database
    assert {r: v["status"] for r, v in runners.items()} == {"alpha": "live", "beta": "live"}
    assert runners["alpha"]["url"].endswith(f":{RUNNER_PORT}")
    health = httpx.get(c1.url + "/health").json()
    assert health["mode"] == "coordinator" and health["remoteRunners"] == 2
    assert {r["id"] for r in health["runners"]} == {"alpha", "beta"}
    with c1.client() as client:
        scraped = client.get("/metrics").text
    assert metric(scraped, "ash_runners", {"status": "live"}) == 2
    assert metric(scraped, "ash_runner_capacity", {"runner": "alpha"}) is not None
    cli = subprocess.run(
        [sys.executable, "-m", "ash_cli", "--json", "runners"],
        env={**c1.env, "ASH_SERVER_URL": c1.url, "ASH_API_KEY": c1.api_key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert {r["id"] for r in json.loads(cli.stdout)} == {"alpha", "beta"}
    # A coordinator that forgets a runner (its row gone) hears from it again: it re-registers by itself.
    database = deployment.database_url.rsplit("/", 1)[1]
    deployment.pg.psql("DELETE FROM runners WHERE id = 'beta'", database)
    wait_for(lambda: runners_of(c1).get("beta", {}).get("status") == "live", "beta registered again", 10)
    # Runner lists are for the operator's tenant only.
    other = c1.admin("create-tenant", "acme")["key"]
    refused = httpx.get(c1.url + "/api/internal/runners", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 404


def test_a_burst_of_creates_is_balanced(cluster: tuple[AshServer, ...]) -> None:
    c1, _, _, _ = cluster

    def create(_: int) -> dict[str, str]:
        with c1.client() as client:
            response = client.post("/api/sessions", json={"agent": "helper"})
            assert response.status_code == 201, response.text
            return dict(response.json()["session"])

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        sessions = list(pool.map(create, range(20)))
    spread = Counter(s["runnerId"] for s in sessions)
    assert set(spread) == {"alpha", "beta"}
    assert abs(spread["alpha"] - spread["beta"]) <= 2, spread
    with c1.client() as client:
        for s in sessions:
            assert client.delete(f"/api/sessions/{s['id']}").status_code == 200


def test_a_second_coordinator_serves_a_session_created_through_the_first(
    cluster: tuple[AshServer, ...], deployment: Deployment
) -> None:
    c1, c2, _, _ = cluster
    deployment.model.on("through the other door", text("hello from a runner", chunks=3))
    with c1.client() as client:
        session = client.post("/api/sessions", json={"agent": "helper"}).json()["session"]
    deployment.model.on("tell it slowly", text("one two three four five six", chunks=6, delay=0.3))
    with c2.client() as client:
        body = stream(client, session["id"], "through the other door")
        assert "hello from a runner" in body and "event: done" in body
        # A stream re-attached through the other coordinator replays the same turn.
        with client.stream("GET", f"/api/sessions/{session['id']}/stream") as replay:
            assert "hello from a runner" in "".join(replay.iter_text())
        # Relayed as it comes, not buffered by the coordinator: the first delta reaches the client while the model
        # is still sending the rest.
        request = {"content": "tell it slowly", "includePartialMessages": True}
        with client.stream("POST", f"/api/sessions/{session['id']}/messages", json=request) as response:
            for line in response.iter_lines():
                if line == "event: text_delta":
                    calls = [e for e in deployment.model.request_log if e["messages_endpoint"]]
                    assert calls[-1]["completed"] is False
                    break
    with c1.client() as client:
        messages = client.get(f"/api/sessions/{session['id']}/messages").json()["messages"]
        assert [m["role"] for m in messages][:2] == ["user", "assistant"]
        assert client.get(f"/api/sessions/{session['id']}").json()["session"]["runnerId"] == session["runnerId"]


def _signed(secret: str, method: str, url: str, body: bytes = b"", **principal: str) -> dict[str, str]:
    target = httpx.URL(url).raw_path
    return RequestSigner(secret).sign(method, target, body, **principal)


def test_internal_traffic_needs_the_secret(cluster: tuple[AshServer, ...], deployment: Deployment) -> None:
    c1, _, _, _ = cluster
    register = c1.url + "/api/internal/cluster/register"
    payload = json.dumps({"id": "intruder", "url": "http://10.0.0.9:4200", "maxSandboxes": 5, "version": "x"}).encode()
    json_type = {"content-type": "application/json"}
    # Registration and heartbeats: unsigned, wrongly signed, and replayed requests are refused.
    assert httpx.post(register, content=payload, headers=json_type).status_code == 401
    wrong = _signed("w" * 64, "POST", register, payload)
    assert httpx.post(register, content=payload, headers={**json_type, **wrong}).status_code == 401
    heartbeat = c1.url + "/api/internal/cluster/heartbeat"
    beat = json.dumps({"id": "alpha", "sandboxes": 0, "received": 0, "stats": {}}).encode()
    assert httpx.post(heartbeat, content=beat, headers=json_type).status_code == 401
    good = _signed(deployment.secret, "POST", heartbeat, beat)
    assert httpx.post(heartbeat, content=beat, headers={**json_type, **good}).status_code == 200
    assert httpx.post(heartbeat, content=beat, headers={**json_type, **good}).status_code == 401  # replay
    tampered = _signed(deployment.secret, "POST", register, payload)
    assert httpx.post(register, content=payload + b" ", headers={**json_type, **tampered}).status_code == 401
    assert "intruder" not in runners_of(c1)
    # A runner takes nothing but signed coordinator requests: not an API key, not a wrong secret.
    runner = f"http://{deployment.address('alpha')}:{RUNNER_PORT}/api/sessions"
    create = json.dumps({"agent": "helper"}).encode()
    assert (
        httpx.post(runner, content=create, headers={**json_type, "Authorization": f"Bearer {c1.api_key}"}).status_code
        == 401
    )
    forged = _signed("f" * 64, "POST", runner, create, tenant="default", key_id="x")
    assert httpx.post(runner, content=create, headers={**json_type, **forged}).status_code == 401
    assert httpx.get(f"http://{deployment.address('alpha')}:{RUNNER_PORT}/health").status_code == 200


def test_failover_when_a_runner_dies_and_a_restarted_runner_leaves_the_moved_session_alone(
    cluster: tuple[AshServer, ...], deployment: Deployment
) -> None:
    c1, c2, alpha, beta = cluster
    model: FakeAnthropic = deployment.model
    model.on("remember the number 4242", text("noted"))
    model.on("what was the number", text("it was 4242"))
    with c1.client() as client:
        session = client.post("/api/sessions", json={"agent": "helper"}).json()["session"]
        sid, home = session["id"], session["runnerId"]
        assert "noted" in stream(client, sid, "remember the number 4242")
        upload = {"files": [{"path": "notes/plan.txt", "content": base64.b64encode(b"keep me").decode()}]}
        written = client.post(f"/api/sessions/{sid}/files", json=upload)
        assert written.status_code == 200, written.text
        # The turn's snapshot (taken after `done`) is in the bucket before the machine dies.
        pause = client.post(f"/api/sessions/{sid}/pause")
        assert pause.status_code == 200
        assert client.post(f"/api/sessions/{sid}/resume").status_code == 200
    dying, survivor = (alpha, "beta") if home == "alpha" else (beta, "alpha")
    killed_at = time.monotonic()
    dying.kill()

    def marked() -> bool:
        with c2.client() as client:
            events = client.get(f"/api/sessions/{sid}/events").json()["events"]
        return runners_of(c2)[home]["status"] == "dead" and any(
            e["type"] == "lifecycle" and json.loads(e.get("data") or "{}").get("action") == "runner_lost"
            for e in events
        )

    wait_for(marked, "the dead runner and its session marked", LIVENESS_MS / 1000 * 3)
    assert time.monotonic() - killed_at < LIVENESS_MS / 1000 * 3
    with c2.client() as client:
        reply = stream(client, sid, "what was the number")
        assert "it was 4242" in reply
        moved = client.get(f"/api/sessions/{sid}").json()["session"]
        assert moved["runnerId"] == survivor and moved["status"] == "active"
        kept = client.get(f"/api/sessions/{sid}/files/notes/plan.txt", params={"format": "json"})
        assert kept.json()["content"] == "keep me"
    # The conversation came along: the model saw the first turn in the request of the second.
    asked = model.requests_with_prompt("what was the number")[-1]
    assert "remember the number 4242" in " ".join(FakeAnthropic.user_texts(asked))

    # The dead runner comes back with its old (stale) copy of the session on disk: it registers again and
    # refuses the session, which stays where it moved.
    restarted = deployment.runner(home, c1).start()
    wait_for(lambda: runners_of(c1)[home]["status"] == "live", "the restarted runner registered", 30)
    url = f"{restarted.url}/api/sessions/{sid}/messages"
    body = json.dumps({"content": "are you there"}).encode()
    signed = _signed(deployment.secret, "POST", url, body, tenant="default", key_id="test")
    direct = httpx.post(url, content=body, headers={"content-type": "application/json", **signed})
    assert direct.status_code == 409 and direct.headers["x-ash-session-moved"] == survivor
    with c1.client() as client:
        assert "it was 4242" in stream(client, sid, "what was the number")
        assert client.get(f"/api/sessions/{sid}").json()["session"]["runnerId"] == survivor
    # No sandbox of it (or of anything) runs on the restarted machine.
    assert httpx.get(restarted.url + "/health").json()["pool"]["total"] == 0
    # SIGTERM: it drains and deregisters (gone from the list, not dead).
    restarted.stop()
    assert restarted.process is not None and restarted.process.returncode in (0, -15)
    assert home not in runners_of(c1)
