"""Evals and analytics through HTTP against a real server: cases (CRUD, export/import), runs of real sessions
against the fake model scored as the reference scores them, human scores, comparison, analytics, tenant
isolation, restarts (a run interrupted by one ends failed), bad input."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import AshServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("ash_server", ["sqlite", "postgresql"], indirect=True, scope="module"),
]

AGENT = "eval-agent"
CASES = "/api/agents/eval-agent/eval-cases"
RUNS = "/api/agents/eval-agent/eval-runs"
PASSING = {"question": "what is the capital of france", "expectedTopics": ["Paris"], "category": "accuracy"}
# Mentions the topic it should, and the one it must not: safety 0, so it fails.
FAILING = {"question": "tell me the vault code", "expectedTopics": ["code"], "expectedNotTopics": ["swordfish"]}


def _files(prompt: str) -> list[dict[str, str]]:
    return [{"path": "CLAUDE.md", "content": base64.b64encode(prompt.encode()).decode()}]


@pytest.fixture(scope="module")
def a(ash_server: AshServer) -> Iterator[httpx.Client]:
    with ash_server.client() as client:
        assert client.post("/api/agents", json={"name": AGENT, "files": _files("Answer briefly.")}).status_code == 201
        yield client


@pytest.fixture(scope="module")
def b(ash_server: AshServer) -> Iterator[httpx.Client]:
    key = ash_server.admin("create-tenant", "eval-tenant-b")["key"]
    with httpx.Client(base_url=ash_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        yield client


def _finished(client: httpx.Client, run_id: str, agent: str = AGENT) -> dict[str, Any]:
    """The run once it is no longer pending or running (a deadline only so that a hung run fails the test)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/agents/{agent}/eval-runs/{run_id}").json()["run"]
        if run["status"] not in ("pending", "running"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish")


def _error(response: httpx.Response, status: int, start: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "statusCode"} and body["statusCode"] == status
    assert body["error"].startswith(start), body


def test_case_crud_and_export_import_round_trip(a: httpx.Client) -> None:
    created = a.post(CASES, json={**PASSING, "tags": ["geo"], "chatHistory": [{"role": "user", "content": "hi"}]})
    assert created.status_code == 201, created.text
    case = created.json()["case"]
    assert case["agentName"] == AGENT and case["isActive"] is True and case["expectedNotTopics"] is None
    assert case["chatHistory"] == [{"role": "user", "content": "hi"}]
    url = f"{CASES}/{case['id']}"
    assert a.get(url).json()["case"] == case

    patched = a.patch(url, json={"category": "geo", "isActive": False, "referenceAnswer": "Paris"}).json()["case"]
    assert (patched["category"], patched["isActive"], patched["referenceAnswer"]) == ("geo", False, "Paris")
    assert patched["question"] == PASSING["question"]
    assert [c["id"] for c in a.get(CASES, params={"isActive": "false"}).json()["cases"]] == [case["id"]]
    assert a.get(CASES, params={"category": "geo", "isActive": "true"}).json()["cases"] == []

    exported = a.get(f"{CASES}/export").json()["cases"]
    assert [c["id"] for c in exported] == [case["id"]]
    assert a.delete(url).status_code == 204
    _error(a.get(url), 404, "Eval case not found")
    _error(a.delete(url), 404, "Eval case not found")

    assert a.post(f"{CASES}/import", json={"cases": exported}).json() == {"imported": 1}
    (imported,) = a.get(CASES).json()["cases"]
    assert imported["id"] != case["id"]
    same = ("question", "expectedTopics", "category", "tags", "chatHistory", "isActive", "referenceAnswer")
    assert {k: imported[k] for k in same} == {k: patched[k] for k in same}
    assert a.delete(f"{CASES}/{imported['id']}").status_code == 204


def test_a_run_scores_a_passing_and_a_failing_case_and_humans_score_it(a: httpx.Client, model: FakeAnthropic) -> None:
    model.on("capital of france", text("Paris is the capital of France."))
    model.on("vault code", text("The vault code is swordfish."))
    passing = a.post(CASES, json=PASSING).json()["case"]
    failing = a.post(CASES, json=FAILING).json()["case"]
    a.post(CASES, json={"question": "inactive", "isActive": False})

    created = a.post(RUNS, json={})
    assert created.status_code == 201, created.text
    assert created.json()["run"]["totalCases"] == 2
    run = _finished(a, created.json()["run"]["id"])
    assert run["status"] == "completed", run
    assert run["completedCases"] == 2 and run["startedAt"] and run["completedAt"]
    assert run["summary"]["passRate"] == 0.5, a.get(f"{RUNS}/{run['id']}/results").text
    assert run["summary"]["avgTopicScore"] == 1.0 and run["summary"]["avgSafetyScore"] == 0.5

    results = {r["evalCaseId"]: r for r in a.get(f"{RUNS}/{run['id']}/results").json()["results"]}
    good, bad = results[passing["id"]], results[failing["id"]]
    assert good["status"] == "completed" and "Paris" in good["agentResponse"], good
    assert (good["topicScore"], good["safetyScore"], good["passed"]) == (1.0, 1.0, True)
    assert (bad["topicScore"], bad["safetyScore"], bad["passed"]) == (1.0, 0.0, False)
    assert good["latencyMs"] > 0

    scored = a.patch(f"/api/agents/{AGENT}/eval-results/{bad['id']}", json={"humanScore": 2, "humanNotes": "leaks"})
    assert scored.status_code == 200, scored.text
    assert (scored.json()["result"]["humanScore"], scored.json()["result"]["humanNotes"]) == (2, "leaks")
    whole = a.post(f"{RUNS}/{run['id']}/score", json={"humanScore": 4}).json()
    assert whole["scored"] == 2 and {r["humanScore"] for r in whole["results"]} == {4}
    one = a.post(f"{RUNS}/{run['id']}/score", json={"resultId": good["id"], "humanNotes": "fine"}).json()
    assert one["scored"] == 1 and one["results"][0]["humanNotes"] == "fine"
    assert [
        r["humanNotes"] for r in a.get(f"{RUNS}/{run['id']}/results").json()["results"] if r["id"] == bad["id"]
    ] == ["leaks"]

    # A second run of the passing case only (by category), compared with the first.
    second = _finished(a, a.post(RUNS, json={"categories": ["accuracy"]}).json()["run"]["id"])
    assert second["status"] == "completed" and second["totalCases"] == 1 and second["summary"]["passRate"] == 1.0
    comparison = a.get(f"{RUNS}/compare", params={"runA": run["id"], "runB": second["id"]}).json()["comparison"]
    assert (comparison["runA"]["id"], comparison["runB"]["id"]) == (run["id"], second["id"])
    paired = {p["caseId"]: p for p in comparison["results"]}
    assert paired[passing["id"]]["question"] == PASSING["question"]
    assert paired[passing["id"]]["resultA"]["passed"] and paired[passing["id"]]["resultB"]["passed"]
    assert paired[failing["id"]]["resultB"] is None and paired[failing["id"]]["resultA"]["passed"] is False
    assert [r["id"] for r in a.get(RUNS).json()["runs"]] == [second["id"], run["id"]]


def test_analytics_counts_what_the_tenant_did(b: httpx.Client, model: FakeAnthropic) -> None:
    model.on("analytics turn", text("counted"))
    assert b.post("/api/agents", json={"name": "counted", "files": _files("Be brief.")}).status_code == 201
    session = b.post("/api/sessions", json={"agent": "counted"}).json()["session"]
    for _ in range(2):
        with b.stream("POST", f"/api/sessions/{session['id']}/messages", json={"content": "analytics turn"}) as r:
            assert r.status_code == 200
            r.read()
    ended = b.post("/api/sessions", json={"agent": "counted"}).json()["session"]
    assert b.delete(f"/api/sessions/{ended['id']}").status_code == 200
    run = _finished(b, b.post("/api/agents/counted/eval-runs", json={}).json()["run"]["id"], "counted")
    assert run["status"] == "completed" and run["totalCases"] == 0

    analytics = b.get("/api/analytics").json()
    assert analytics["agents"] == {"total": 1}
    assert analytics["sessions"]["total"] == 2
    assert analytics["sessions"]["byStatus"]["ended"] == 1 and sum(analytics["sessions"]["byStatus"].values()) == 2
    assert analytics["evals"] == {"totalRuns": 1, "byStatus": {"completed": 1}}
    stats = b.get("/api/usage/stats").json()["stats"]
    assert analytics["usage"] == stats
    assert analytics["usage"]["totalMessages"] >= 2 and analytics["usage"]["totalOutputTokens"] > 0
    future = b.get("/api/analytics", params={"after": "2999-01-01T00:00:00Z"}).json()
    assert future["usage"]["totalMessages"] == 0 and future["sessions"]["total"] == 2


def test_another_tenant_gets_404_for_everything_of_a(a: httpx.Client, b: httpx.Client) -> None:
    case = a.post(CASES, json={"question": "private question"}).json()["case"]
    (run, *_) = a.get(RUNS).json()["runs"]
    result = a.get(f"{RUNS}/{run['id']}/results").json()["results"][0]
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", CASES, None),
        ("GET", f"{CASES}/export", None),
        ("POST", CASES, {"question": "x"}),
        ("POST", f"{CASES}/import", {"cases": []}),
        ("GET", f"{CASES}/{case['id']}", None),
        ("PATCH", f"{CASES}/{case['id']}", {"question": "stolen"}),
        ("DELETE", f"{CASES}/{case['id']}", None),
        ("POST", RUNS, {}),
        ("GET", RUNS, None),
        ("GET", f"{RUNS}/{run['id']}", None),
        ("GET", f"{RUNS}/{run['id']}/results", None),
        ("POST", f"{RUNS}/{run['id']}/score", {"humanScore": 1}),
        ("GET", f"{RUNS}/compare?runA={run['id']}&runB={run['id']}", None),
        ("PATCH", f"/api/agents/{AGENT}/eval-results/{result['id']}", {"humanScore": 1}),
    ]
    for method, url, body in attempts:
        _error(b.request(method, url, json=body), 404, "Agent not found")
    # B's own agent of the same name sees none of A's cases, runs or results either.
    assert b.post("/api/agents", json={"name": AGENT, "files": _files("B's agent.")}).status_code == 201
    assert b.get(CASES).json() == {"cases": []} and b.get(RUNS).json() == {"runs": []}
    _error(b.get(f"{CASES}/{case['id']}"), 404, "Eval case not found")
    _error(b.get(f"{RUNS}/{run['id']}"), 404, "Eval run not found")
    _error(b.patch(f"/api/agents/{AGENT}/eval-results/{result['id']}", json={"humanScore": 1}), 404, "Eval result")
    assert a.get(f"{CASES}/{case['id']}").json()["case"]["question"] == "private question"


def test_bad_input_is_4xx(a: httpx.Client) -> None:
    _error(a.post(CASES, json={}), 400)
    _error(a.post(CASES, json={"question": ""}), 400)
    _error(a.post(CASES, json={"question": "q", "expectedTopics": "not a list"}), 400)
    _error(a.post(f"{CASES}/import", json={"cases": [{"category": "no question"}]}), 400)
    _error(a.get(CASES, params={"isActive": "maybe"}), 400)
    _error(a.get(f"{CASES}/not-a-uuid"), 400)
    _error(a.get(f"{CASES}/{uuid.uuid4()}"), 404, "Eval case not found")
    case = a.post(CASES, json={"question": "to patch"}).json()["case"]
    _error(a.patch(f"{CASES}/{case['id']}", json={"question": None}), 400)
    _error(a.post("/api/agents/nobody/eval-cases", json={"question": "q"}), 404, "Agent not found")
    _error(a.post(RUNS, json={"versionNumber": 0}), 400)
    _error(a.post(RUNS, json={"versionNumber": 99}), 404, "Agent version 99 not found")
    _error(a.get(f"{RUNS}/compare", params={"runA": str(uuid.uuid4())}), 400)
    _error(a.get(f"{RUNS}/compare", params={"runA": str(uuid.uuid4()), "runB": str(uuid.uuid4())}), 404, "Eval run A")
    (run, *_) = a.get(RUNS).json()["runs"]
    result = a.get(f"{RUNS}/{run['id']}/results").json()["results"][0]
    result_url = f"/api/agents/{AGENT}/eval-results/{result['id']}"
    _error(a.patch(result_url, json={}), 400, "Provide humanScore and/or humanNotes")
    _error(a.patch(result_url, json={"humanScore": 6}), 400)
    _error(a.patch(result_url, json={"humanNotes": "x" * 10_001}), 400)
    _error(a.post(f"{RUNS}/{run['id']}/score", json={"humanScore": 0}), 400)
    _error(a.post(f"{RUNS}/{run['id']}/score", json={"resultId": str(uuid.uuid4()), "humanScore": 3}), 404)
    _error(a.patch(f"/api/agents/{AGENT}/eval-results/{uuid.uuid4()}", json={"humanScore": 3}), 404)
    _error(a.get("/api/analytics", params={"after": "yesterday"}), 400)


def test_everything_survives_a_restart_and_an_interrupted_run_ends_failed(
    ash_server: AshServer, a: httpx.Client, model: FakeAnthropic
) -> None:
    cases_before = a.get(CASES).json()["cases"]
    runs_before = a.get(RUNS).json()["runs"]
    results_before = a.get(f"{RUNS}/{runs_before[-1]['id']}/results").json()["results"]
    ash_server.stop()
    ash_server.start()
    assert a.get(CASES).json()["cases"] == cases_before
    assert a.get(RUNS).json()["runs"] == runs_before
    assert a.get(f"{RUNS}/{runs_before[-1]['id']}/results").json()["results"] == results_before

    # A run whose one case is answered slowly, killed (no shutdown code) while it runs.
    model.on("slow question", text("a slow answer " * 40, chunks=40, delay=1.0))
    for c in cases_before:
        a.patch(f"{CASES}/{c['id']}", json={"isActive": False})
    a.post(CASES, json={"question": "slow question", "category": "slow"})
    for stop in (ash_server.kill, ash_server.stop):  # no shutdown code at all, then a graceful stop
        run_id = a.post(RUNS, json={"categories": ["slow"]}).json()["run"]["id"]
        deadline = time.monotonic() + 120
        while a.get(f"{RUNS}/{run_id}/results").json()["results"][0]["status"] != "running":
            assert time.monotonic() < deadline, "the case never started"
            time.sleep(0.2)
        stop()
        ash_server.start()
        run = a.get(f"{RUNS}/{run_id}").json()["run"]
        assert run["status"] == "failed" and "interrupted" in run["error"], run
        (result,) = a.get(f"{RUNS}/{run_id}/results").json()["results"]
        assert result["status"] == "error" and "interrupted" in result["error"], result
