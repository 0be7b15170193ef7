"""A hostile tenant against one live server: tenant B, with a key of its own, tries every configuration-level
escalation an attacker would (deploying from the server's disk, giving its sandbox the host's network, lifting a
limit or a spending control, revoking or impersonating the operator's key, reading the server's metrics, reaching
the operator's credential), and each is refused with a 403 or 404 whose message names why. The operator's tenant
(`default`) tries the same probes and gets what the operator's settings give it.

Each protection has its own detailed test (named in docs/security.md, *Trust boundaries*); this file walks them in
one place, as one attacker would, so that a protection given way is seen here whichever module it lives in."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.metrics import samples, total
from tests.support.server import AshServer, short_tempdir
from tests.support.sse import new_session, turn

pytestmark = pytest.mark.slow

ENV_KEY = "ash_" + "h" * 43
CREDENTIAL_KEY = "hostile-test-credential-key-0123456789"
FILES = [{"path": "CLAUDE.md", "content": base64.b64encode(b"be brief").decode()}]


@dataclass
class Tenants:
    server: AshServer
    operator: httpx.Client
    b: httpx.Client
    roots: Path


def assert_refused(response: httpx.Response, status: int, *fragments: str) -> None:
    """Refused with `status`, in the `{error, statusCode}` shape, with a message that says why."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status and isinstance(body["error"], str), body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


@pytest.fixture(scope="module")
def tenants(fake_model: FakeAnthropic) -> Iterator[Tenants]:
    roots = short_tempdir()
    env = {
        "ASH_API_KEY": ENV_KEY,
        "ASH_AGENT_ROOTS": str(roots),
        "ASH_CREDENTIAL_KEY": CREDENTIAL_KEY,
        "ASH_GATEWAY_MODELS": "claude-sonnet-*",
    }
    server = AshServer(fake_model.url, env=env).start()
    key_b = server.admin("create-tenant", "tenant-b")["key"]
    operator = server.client()
    b = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key_b}"}, timeout=120)
    try:
        yield Tenants(server, operator, b, roots)
    finally:
        b.close()
        operator.close()
        server.cleanup()


def agent_folder(root: Path, name: str, *secrets: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "CLAUDE.md").write_text("be brief")
    for secret in secrets:
        (folder / secret).write_text("SECRET=1")
    return folder


def test_deploying_from_the_servers_disk(tenants: Tenants) -> None:
    folder = agent_folder(tenants.roots, "by-path")
    body = {"name": "by-path", "path": str(folder)}
    assert_refused(tenants.b.post("/api/agents", json=body), 403, "ASH_PATH_DEPLOY_TENANTS")
    assert_refused(tenants.b.post("/api/agents", json={"name": "home", "path": str(Path.home())}), 403)
    assert tenants.b.get("/api/agents/by-path").status_code == 404
    assert tenants.operator.post("/api/agents", json=body).status_code == 201
    # Even the operator: nothing outside the configured roots, nothing that holds a secret-bearing name.
    assert_refused(tenants.operator.post("/api/agents", json={"name": "etc", "path": "/etc"}), 400, "ASH_AGENT_ROOTS")
    leaky = agent_folder(tenants.roots, "leaky", ".env")
    assert_refused(tenants.operator.post("/api/agents", json={"name": "leaky", "path": str(leaky)}), 400, ".env")


def test_giving_its_sandbox_a_network(tenants: Tenants) -> None:
    for client in (tenants.operator, tenants.b):
        assert client.post("/api/agents", json={"name": "net", "files": FILES}).status_code == 201
    for escalation in ("full", {"allow": ["pypi.org"]}, {"allow": ["127.0.0.1:4100"]}, {"allow": ["169.254.169.254"]}):
        assert_refused(tenants.b.patch("/api/agents/net/config", json={"network": escalation}), 403, "'none'")
    assert tenants.b.patch("/api/agents/net/config", json={"network": "none"}).status_code == 200
    # The operator's tenant may allowlist public destinations (the default ceiling), never the host or metadata.
    allowed = tenants.operator.patch("/api/agents/net/config", json={"network": {"allow": ["pypi.org"]}})
    assert allowed.status_code == 200, allowed.text
    for escalation in ("full", {"allow": ["127.0.0.1:4100"]}, {"allow": ["169.254.169.254"]}):
        refused = tenants.operator.patch("/api/agents/net/config", json={"network": escalation})
        assert_refused(refused, 403, "ASH_NETWORK_CEILINGS")
    # A session carries no network of its own (unknown fields are ignored, as the reference's clients expect).
    assert tenants.b.post("/api/sessions", json={"agent": "net", "network": "full"}).status_code == 201
    assert tenants.b.get("/api/agents/net/config").json()["config"]["network"] == "none"


def test_lifting_a_limit_or_a_spending_control(tenants: Tenants, fake_model: FakeAnthropic) -> None:
    assert tenants.b.post("/api/agents", json={"name": "spender", "files": FILES}).status_code == 201
    # The server's sandbox limits are ceilings: an agent may ask for less, never more.
    lifted = tenants.b.patch("/api/agents/spender/config", json={"limits": {"memoryMb": 1_000_000}})
    assert_refused(lifted, 400, "ASH_SANDBOX")
    lifted = tenants.b.patch("/api/agents/spender/config", json={"limits": {"diskInodes": 10_000_000}})
    assert_refused(lifted, 400, "ASH_SANDBOX")
    # The gateway's model allowlist holds whatever the session asks for: its own budget and model are the CLI's,
    # inside the sandbox; the gateway refuses the call before it reaches the model.
    fake_model.on("spend the operator's money", text("spent"))
    session = new_session(tenants.b, "spender", model="claude-opus-9", maxBudgetUsd=1_000_000)
    result = turn(tenants.b, session["id"], "spend the operator's money")
    assert result.frames[-1].event == "done"
    assert not [r for r in fake_model.requests_with_prompt("spend the operator's money") if "opus" in r["model"]]
    assert "spent" not in json.dumps([frame.data for frame in result.frames])
    refusals = total(samples(tenants.operator.get("/metrics").text), "ash_gateway_refusals_total", reason="model")
    assert refusals >= 1  # the CLI did call, and the gateway refused it


def test_the_operators_key_and_other_tenants_keys(tenants: Tenants) -> None:
    operator_keys = tenants.operator.get("/api/api-keys").json()["keys"]
    (env_key,) = [k for k in operator_keys if k["label"] == "ASH_API_KEY"]
    assert_refused(tenants.b.delete(f"/api/api-keys/{env_key['id']}"), 404)
    assert_refused(tenants.b.get(f"/api/api-keys/{env_key['id']}"), 404)
    assert env_key["id"] not in {k["id"] for k in tenants.b.get("/api/api-keys").json()["keys"]}
    assert_refused(tenants.b.post("/api/api-keys", json={"label": "ASH_API_KEY"}), 400, "reserved")
    # Not even the operator can revoke the key the server was configured with.
    assert_refused(tenants.operator.delete(f"/api/api-keys/{env_key['id']}"), 409, "environment")
    second = tenants.operator.post("/api/api-keys", json={"label": "operator's second"}).json()
    assert_refused(tenants.b.delete(f"/api/api-keys/{second['id']}"), 404)
    assert tenants.operator.delete(f"/api/api-keys/{second['id']}").status_code == 204


def test_the_servers_metrics(tenants: Tenants) -> None:
    assert_refused(tenants.b.get("/metrics"), 403, "operator")
    served = tenants.operator.get("/metrics")
    assert served.status_code == 200 and "ash_" in served.text


def test_the_operators_credential(tenants: Tenants) -> None:
    created = tenants.operator.post("/api/credentials", json={"type": "anthropic", "key": "sk-ant-operator-012345678"})
    assert created.status_code == 201, created.text
    credential_id = created.json()["credential"]["id"]
    assert_refused(tenants.b.get(f"/api/credentials/{credential_id}"), 404)
    assert_refused(tenants.b.delete(f"/api/credentials/{credential_id}"), 404)
    assert credential_id not in {c["id"] for c in tenants.b.get("/api/credentials").json()["credentials"]}
    assert tenants.b.post("/api/agents", json={"name": "borrower", "files": FILES}).status_code == 201
    borrowed = tenants.b.post("/api/sessions", json={"agent": "borrower", "credentialId": credential_id})
    assert_refused(borrowed, 404, "not found")
    assert tenants.operator.get(f"/api/credentials/{credential_id}").status_code == 200
