"""The operator caps each tenant's network (ASH_NETWORK_CEILINGS): by default the operator's tenant may allowlist
public destinations and no other tenant may have any network; loopback, private, link-local (cloud metadata)
destinations and the host's network need a ceiling the operator grants. Checked when an agent is configured (403)
and at every sandbox start (a ceiling lowered later applies to agents configured before)."""

from __future__ import annotations

import httpx
import pytest

from ash_server.errors import Forbidden, Invalid
from ash_server.gateway.network import NetworkCeilings, parse_network
from ash_server.settings import Settings, parse_ceilings
from ash_server.states import NetworkCeiling
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer


@pytest.mark.parametrize(
    ("policy", "needed"),
    [
        ("none", NetworkCeiling.NONE),
        ({"allow": ["pypi.org", "*.pythonhosted.org:443", "8.8.8.8:53", "[2606:4700::1111]"]}, NetworkCeiling.PUBLIC),
        ({"allow": ["pypi.org", "localhost:8080"]}, NetworkCeiling.PRIVATE),
        ({"allow": ["169.254.169.254"]}, NetworkCeiling.PRIVATE),
        ({"allow": ["10.0.0.5:5432"]}, NetworkCeiling.PRIVATE),
        ({"allow": ["[::1]:80"]}, NetworkCeiling.PRIVATE),
        ("full", NetworkCeiling.FULL),
    ],
)
def test_each_policy_needs_the_least_ceiling_that_admits_it(policy: object, needed: NetworkCeiling) -> None:
    assert parse_network(policy).ceiling_needed() == needed


def test_ceilings_by_tenant_with_a_default_for_the_others() -> None:
    ceilings = NetworkCeilings(parse_ceilings("default=full, ops=private, *=public"))
    assert [ceilings.of(t) for t in ("default", "ops", "anyone")] == ["full", "private", "public"]
    assert NetworkCeilings(parse_ceilings("default=public")).of("anyone") == NetworkCeiling.NONE
    with pytest.raises(Forbidden, match="'private' ceiling; the operator allows this tenant 'public'"):
        ceilings.check("anyone", parse_network({"allow": ["localhost:1"]}))
    ceilings.check("ops", parse_network({"allow": ["localhost:1"]}))
    assert Settings().network_ceiling_map == {"default": NetworkCeiling.PUBLIC}
    for bad in ("default", "default=open", "=full"):
        with pytest.raises(ValueError, match="invalid network ceiling"):
            parse_ceilings(bad)
    with pytest.raises(Invalid):
        parse_network("open")


@pytest.mark.slow
def test_the_ceiling_holds_at_configuration_and_at_every_sandbox_start(fake_model: FakeAnthropic) -> None:
    with AshServer(fake_model.url) as server:
        key_b = server.admin("create-tenant", "tenant-b")["key"]
        headers = {"Authorization": f"Bearer {key_b}"}
        with server.client() as operator, httpx.Client(base_url=server.url, headers=headers, timeout=60) as b:
            for client in (operator, b):
                assert client.post("/api/agents", json={"name": "net", "files": FILES}).status_code == 201
            config = "/api/agents/net/config"
            assert operator.patch(config, json={"network": {"allow": ["pypi.org"]}}).status_code == 200
            for escalation in ({"allow": ["localhost:4100"]}, {"allow": ["169.254.169.254:80"]}, "full"):
                refused = operator.patch(config, json={"network": escalation})
                assert refused.status_code == 403 and "ASH_NETWORK_CEILINGS" in refused.json()["error"], refused.text
            refused = b.patch(config, json={"network": {"allow": ["pypi.org"]}})
            assert refused.status_code == 403 and "'none'" in refused.json()["error"], refused.text
            assert b.patch(config, json={"network": "none"}).status_code == 200
            assert operator.get("/api/agents/net").json()["agent"]["config"]["network"] == {"allow": ["pypi.org"]}

        # The operator lowers the operator's own ceiling: the agent configured before cannot start a sandbox.
        server.stop()
        server.env["ASH_NETWORK_CEILINGS"] = "default=none"
        server.start()
        with server.client() as operator:
            created = operator.post("/api/sessions", json={"agent": "net"})
            assert created.status_code == 403 and "ASH_NETWORK_CEILINGS" in created.json()["error"], created.text


FILES = [{"path": "CLAUDE.md", "content": "TmV0d29yayBhZ2VudC4="}]
