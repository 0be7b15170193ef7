"""Tenant isolation through the API, on both engines: with its own key, tenant B cannot list, read, message,
pause, resume, stop, fork, download the files of or delete anything of tenant A's; every attempt is a 404, exactly
as for something that does not exist. Every route of the live OpenAPI spec that names an agent, a session, a
credential or an API key is tried, so a route added later is covered without editing this test."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import AshServer

pytestmark = pytest.mark.slow

CREDENTIAL_KEY = "tenant-test-credential-key-0123456789"
NO_ID = "00000000-0000-4000-8000-000000000000"
# Minimal valid bodies, so that B's requests fail on the lookup (404) and not on validation (400).
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/api/sessions/{session_id}/messages"): {"content": "what did A say?"},
    ("post", "/api/sessions/{session_id}/exec"): {"command": "cat CLAUDE.md"},
    ("patch", "/api/sessions/{session_id}/config"): {"model": "claude-x"},
    ("patch", "/api/agents/{name}"): {"env": {"STOLEN": "1"}},
    ("patch", "/api/agents/{name}/config"): {"network": "none"},
    ("post", "/api/agents/{name}/files"): {"files": [{"path": "x.md", "content": "eA=="}]},
    ("post", "/api/sessions/{session_id}/files"): {"files": [{"path": "x.md", "content": "eA=="}]},
    ("post", "/api/sessions/{session_id}/workspace"): {"bundle": "eA=="},
    ("post", "/api/sessions/{session_id}/attachments"): {"filename": "b.txt", "content": "eA=="},
    ("post", "/api/agents/{name}/eval-cases"): {"question": "q"},
    ("post", "/api/agents/{name}/eval-cases/import"): {"cases": []},
    ("patch", "/api/agents/{name}/eval-cases/{case_id}"): {"question": "q"},
    ("post", "/api/agents/{name}/eval-runs/{run_id}/score"): {"humanScore": 1},
    ("patch", "/api/agents/{name}/eval-results/{result_id}"): {"humanScore": 1},
    ("patch", "/api/agents/{name}/versions/{version}"): {"releaseNotes": "B was here"},
}
# Required query parameters (their absence is a 400 before anything is looked up).
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/api/agents/{name}/eval-runs/compare"): {"runA": NO_ID, "runB": NO_ID},
}


@dataclass
class Tenants:
    server: AshServer
    a: httpx.Client
    b: httpx.Client
    agent: str
    session_id: str
    credential_id: str
    key_id: str
    attachment_id: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tenants(request: pytest.FixtureRequest, fake_model: FakeAnthropic) -> Iterator[Tenants]:
    database_url = request.getfixturevalue("postgres").database() if request.param == "postgresql" else None
    server = AshServer(fake_model.url, database_url=database_url, env={"ASH_CREDENTIAL_KEY": CREDENTIAL_KEY}).start()
    key_b = server.admin("create-tenant", "tenant-b")["key"]
    a = server.client()
    b = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key_b}"}, timeout=60)
    try:
        fake_model.on("tenant a secret", text("A's secret answer"))
        files = [{"path": "CLAUDE.md", "content": base64.b64encode(b"A's private prompt").decode()}]
        assert a.post("/api/agents", json={"name": "private-agent", "files": files}).status_code == 201
        session = a.post("/api/sessions", json={"agent": "private-agent"}).json()["session"]
        with a.stream("POST", f"/api/sessions/{session['id']}/messages", json={"content": "tenant a secret"}) as r:
            assert r.status_code == 200
            r.read()
        credential = a.post("/api/credentials", json={"type": "anthropic", "key": "sk-ant-tenant-a-0123456789"})
        key = a.post("/api/api-keys", json={"label": "A's second key"})
        attachment = a.post(
            f"/api/sessions/{session['id']}/attachments",
            json={"filename": "a.txt", "content": base64.b64encode(b"A's file").decode(), "mimeType": "text/plain"},
        )
        assert attachment.status_code == 201, attachment.text
        yield Tenants(
            server,
            a,
            b,
            "private-agent",
            session["id"],
            credential.json()["credential"]["id"],
            key.json()["apiKey"]["id"],
            attachment.json()["attachment"]["id"],
        )
    finally:
        a.close()
        b.close()
        server.cleanup()


def a_resource_routes(spec: dict[str, Any], t: Tenants) -> list[tuple[str, str, str]]:
    """(method, template, url) of every route that addresses one of A's resources."""
    values = {
        "{session_id}": t.session_id,
        "{name}": t.agent,
        "{credential_id}": t.credential_id,
        "{key_id}": t.key_id,
        "{attachment_id}": t.attachment_id,
        "{file_path}": "CLAUDE.md",
        "{version}": "1",
        # Under A's agent, B is refused on the agent whatever the id (tests/api/test_evals.py uses A's real ones).
        "{case_id}": NO_ID,
        "{run_id}": NO_ID,
        "{result_id}": NO_ID,
    }
    routes = []
    for template, methods in spec["paths"].items():
        if not any(v in template for v in values if v not in ("{file_path}", "{version}")):
            continue
        url = template
        for placeholder, value in values.items():
            url = url.replace(placeholder, value)
        assert "{" not in url, f"a path parameter this test does not know: {template}"
        routes.extend((method, template, url) for method in methods)
    return routes


def test_b_gets_404_for_every_route_to_a_resource_of_a(tenants: Tenants) -> None:
    spec = tenants.a.get("/openapi.json").json()
    routes = a_resource_routes(spec, tenants)
    templates = {template for _, template, _ in routes}
    for expected in (
        "/api/agents/{name}",
        "/api/agents/{name}/files/{file_path}",
        "/api/agents/{name}/files",
        "/api/agents/{name}/versions",
        "/api/agents/{name}/versions/{version}",
        "/api/agents/{name}/versions/{version}/activate",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/messages",
        "/api/sessions/{session_id}/pause",
        "/api/sessions/{session_id}/resume",
        "/api/sessions/{session_id}/stop",
        "/api/sessions/{session_id}/fork",
        "/api/sessions/{session_id}/files/{file_path}",
        "/api/credentials/{credential_id}",
        "/api/api-keys/{key_id}",
        "/api/attachments/{attachment_id}",
        "/api/sessions/{session_id}/attachments",
    ):
        assert expected in templates
    wrong = []
    for method, template, url in routes:
        body = BODIES.get((method, template))
        params = QUERIES.get((method, template))
        response = tenants.b.request(method.upper(), url, json=body if body is not None else None, params=params)
        if response.status_code != 404 or set(response.json()) != {"error", "statusCode"}:
            wrong.append(f"{method.upper()} {url}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


def test_b_lists_nothing_of_a(tenants: Tenants) -> None:
    b = tenants.b
    assert b.get("/api/agents").json() == {"agents": []}
    assert b.get("/api/sessions").json() == {"sessions": []}
    assert b.get("/api/sessions", params={"agent": tenants.agent}).json() == {"sessions": []}
    assert b.get("/api/credentials").json() == {"credentials": []}
    assert [k["tenantId"] for k in b.get("/api/api-keys").json()["apiKeys"]] == ["tenant-b"]
    assert b.get("/api/usage", params={"sessionId": tenants.session_id}).json() == {"events": []}


def test_b_cannot_use_a_agent_or_credential(tenants: Tenants) -> None:
    b = tenants.b
    assert b.post("/api/sessions", json={"agent": tenants.agent}).status_code == 404
    files = [{"path": "CLAUDE.md", "content": base64.b64encode(b"B's prompt").decode()}]
    # The same agent name is free in B's namespace, and deploying it touches nothing of A's.
    own = b.post("/api/agents", json={"name": tenants.agent, "files": files})
    assert own.status_code == 201 and own.json()["agent"]["version"] == 1
    refused = b.post("/api/sessions", json={"agent": tenants.agent, "credentialId": tenants.credential_id})
    assert refused.status_code == 404
    assert b.get(f"/api/agents/{tenants.agent}/files/CLAUDE.md").json()["content"] == "B's prompt"


def test_a_still_has_everything(tenants: Tenants) -> None:
    a = tenants.a
    session = a.get(f"/api/sessions/{tenants.session_id}").json()["session"]
    assert session["status"] == "active" and session["tenantId"] == "default"
    messages = a.get(f"/api/sessions/{tenants.session_id}/messages").json()["messages"]
    assert messages and "tenant a secret" in messages[0]["content"]
    assert (
        a.get(f"/api/agents/{tenants.agent}/files/CLAUDE.md", headers={"Accept": "application/octet-stream"}).content
        == b"A's private prompt"
    )
    assert a.get(f"/api/agents/{tenants.agent}").json()["agent"]["env"] == {}
    assert a.get(f"/api/credentials/{tenants.credential_id}").status_code == 200
    assert a.get(f"/api/api-keys/{tenants.key_id}").json()["apiKey"]["revokedAt"] is None
    # On disk, each tenant's agents and sessions are in folders of its own.
    data = tenants.server.data_dir
    assert (data / "agents" / "default" / tenants.agent / "CLAUDE.md").read_bytes() == b"A's private prompt"
    assert (data / "agents" / "tenant-b" / tenants.agent / "CLAUDE.md").read_bytes() == b"B's prompt"
    assert (data / "sessions" / "default" / tenants.session_id / "workspace").is_dir()
    assert (data / "sandboxes" / "default" / session["sandboxId"]).is_dir()


def test_server_wide_metrics_are_the_operators(tenants: Tenants) -> None:
    """/metrics counts every tenant's sessions and usage: another tenant's key gets 403, the operator's 200."""
    refused = tenants.b.get("/metrics")
    assert refused.status_code == 403, refused.text
    assert set(refused.json()) == {"error", "statusCode"} and "ASH_METRICS_TOKEN" in refused.json()["error"]
    assert tenants.a.get("/metrics").status_code == 200


def test_the_api_description_needs_a_key_of_any_tenant(tenants: Tenants) -> None:
    for path in ("/openapi.json", "/docs/json", "/docs", "/redoc"):
        anonymous = httpx.get(tenants.server.url + path)
        assert anonymous.status_code == 401 and anonymous.json()["statusCode"] == 401, (path, anonymous.text)
        assert tenants.b.get(path).status_code == 200, path
    assert tenants.b.get("/docs/json").json() == tenants.a.get("/openapi.json").json()
    assert "swagger-ui" in tenants.b.get("/docs").text and "redoc" in tenants.b.get("/redoc").text
