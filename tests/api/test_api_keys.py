"""API keys and abuse limits on a real server: create (the key shown once), list (prefixes only), revoke and expiry
taking effect at once, per-key rate limits on sessions and messages, per-IP limits on failed authentications (the
client IP as ASH_TRUSTED_PROXIES lets the server see it), and CORS for ASH_ALLOWED_ORIGINS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer

pytestmark = pytest.mark.slow

ORIGIN = "https://app.example.com"
LIMITS = {
    "ASH_RATE_LIMIT_SESSIONS_PER_MINUTE": "3",
    "ASH_RATE_LIMIT_MESSAGES_PER_MINUTE": "3",
    "ASH_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE": "4",
    "ASH_TRUSTED_PROXIES": "127.0.0.1",
    "ASH_ALLOWED_ORIGINS": ORIGIN,
}


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    server = AshServer(fake_model.url, env=LIMITS).start()
    try:
        yield server
    finally:
        server.cleanup()


counter = iter(range(1, 250))


def client_ip() -> str:
    """A client address of its own for each test (through the trusted proxy): per-IP limits do not leak."""
    return f"198.51.100.{next(counter)}"


def as_client(server: AshServer, key: str | None, ip: str | None = None) -> httpx.Client:
    headers = {"X-Forwarded-For": ip or client_ip()}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def new_key(server: AshServer, **body: object) -> tuple[str, dict[str, object]]:
    with as_client(server, server.api_key) as admin:
        response = admin.post("/api/api-keys", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] == created["apiKey"]["id"]  # the reference's {id, key}
    return created["key"], created["apiKey"]


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "statusCode"} and response.json()["statusCode"] == status
    assert fragment in response.json()["error"]


def test_a_new_key_is_shown_once_and_listed_by_prefix(server: AshServer) -> None:
    key, public = new_key(server, label="ci")
    assert key.startswith("ash_") and len(key) > 40
    assert public["prefix"] == key[:12] and public["label"] == "ci" and public["tenantId"] == "default"
    assert public["revokedAt"] is None and public["expiresAt"] is None and public["lastUsedAt"] is None
    with as_client(server, key) as client:
        assert client.get("/api/agents").status_code == 200
        listed = client.get("/api/api-keys")
        assert key not in listed.text  # never again, in any form
        mine = [k for k in listed.json()["apiKeys"] if k["id"] == public["id"]]
        assert mine and mine[0]["prefix"] == key[:12] and set(mine[0]) == set(public)
        # The reference's envelope and names: {keys: [{id, label, keyPrefix, createdAt}]}.
        assert listed.json()["keys"] == listed.json()["apiKeys"] and mine[0]["keyPrefix"] == key[:12]
        assert mine[0]["lastUsedAt"] is not None
        assert client.get(f"/api/api-keys/{public['id']}").json()["apiKey"]["id"] == public["id"]
        assert_error(client.get(f"/api/api-keys/{uuid.uuid4()}"), 404)


def test_a_revoked_key_is_refused_at_once(server: AshServer) -> None:
    key, public = new_key(server)
    with as_client(server, key) as victim, as_client(server, server.api_key) as admin:
        assert victim.get("/api/sessions").status_code == 200
        revoked = admin.delete(f"/api/api-keys/{public['id']}")
        assert revoked.status_code == 204 and revoked.content == b""  # as the reference answers
        revoked_at = admin.get(f"/api/api-keys/{public['id']}").json()["apiKey"]["revokedAt"]
        assert revoked_at is not None
        assert_error(victim.get("/api/sessions"), 401, "Invalid API key")
        assert admin.delete(f"/api/api-keys/{public['id']}").status_code == 204  # idempotent: the first time stays
        assert admin.get(f"/api/api-keys/{public['id']}").json()["apiKey"]["revokedAt"] == revoked_at
        assert_error(admin.delete(f"/api/api-keys/{uuid.uuid4()}"), 404)


def test_a_key_may_revoke_itself_but_not_the_last_one(server: AshServer) -> None:
    solo = server.admin("create-tenant", "solo")
    with as_client(server, solo["key"]) as client:
        assert_error(client.delete(f"/api/api-keys/{solo['apiKey']['id']}"), 409, "last usable")
        spare = client.post("/api/api-keys", json={"label": "replacement"}).json()
        assert client.delete(f"/api/api-keys/{solo['apiKey']['id']}").status_code == 204
        assert_error(client.get("/api/agents"), 401)
    with as_client(server, spare["key"]) as client:
        assert client.get("/api/agents").status_code == 200


def test_an_expired_key_is_refused(server: AshServer) -> None:
    with as_client(server, server.api_key) as admin:
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        assert_error(admin.post("/api/api-keys", json={"expiresAt": past}), 400, "future")
        assert_error(admin.post("/api/api-keys", json={"expiresAt": "tomorrow"}), 400, "expiresAt")
    expires = datetime.now(UTC) + timedelta(seconds=2)
    key, public = new_key(server, expiresAt=expires.isoformat())
    assert datetime.fromisoformat(str(public["expiresAt"]).replace("Z", "+00:00")) == expires
    with as_client(server, key) as client:
        assert client.get("/api/agents").status_code == 200
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
        assert_error(client.get("/api/agents"), 401, "expired")


def test_wrong_missing_and_malformed_keys_are_401(server: AshServer) -> None:
    with as_client(server, "ash_" + "x" * 43) as client:
        assert_error(client.get("/api/agents"), 401, "Invalid API key")
    with as_client(server, None) as client:
        assert_error(client.get("/api/agents"), 401, "Authorization")
        assert_error(
            client.get("/api/agents", headers={"Authorization": "Basic abc"}), 401, "Invalid API key: malformed"
        )


def test_session_creation_is_rate_limited_per_key(server: AshServer) -> None:
    key, _ = new_key(server)
    other, _ = new_key(server)
    with as_client(server, key) as client:
        for _ in range(3):  # the limit counts attempts, even ones that fail
            assert_error(client.post("/api/sessions", json={"agent": "nope"}), 404)
        limited = client.post("/api/sessions", json={"agent": "nope"})
        assert_error(limited, 429, "3 sessions per minute")
        assert 1 <= int(limited.headers["Retry-After"]) <= 20
        assert client.get("/api/sessions").status_code == 200  # only session creation is limited
    with as_client(server, other) as client:
        assert_error(client.post("/api/sessions", json={"agent": "nope"}), 404)  # another key, its own budget


def test_messages_are_rate_limited_per_key(server: AshServer) -> None:
    key, _ = new_key(server)
    url = f"/api/sessions/{uuid.uuid4()}/messages"
    with as_client(server, key) as client:
        for _ in range(3):
            assert_error(client.post(url, json={"content": "hi"}), 404)
        limited = client.post(url, json={"content": "hi"})
        assert_error(limited, 429, "messages per minute")
        assert int(limited.headers["Retry-After"]) >= 1


def test_failed_authentications_are_limited_per_client_ip(server: AshServer) -> None:
    ip = client_ip()
    with as_client(server, "ash_wrong-key-for-this-test", ip) as guesser:
        for _ in range(4):
            assert_error(guesser.get("/api/agents"), 401)
        limited = guesser.get("/api/agents")
        assert_error(limited, 429, "failed authentications")
        assert int(limited.headers["Retry-After"]) >= 1
    with as_client(server, server.api_key, ip) as same_ip:
        assert_error(same_ip.get("/api/agents"), 429)  # that address waits, whatever key it tries
    with as_client(server, server.api_key) as elsewhere:
        assert elsewhere.get("/api/agents").status_code == 200


def test_cors_allows_the_configured_origin_only(server: AshServer) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization,content-type"
    allowed = httpx.options(server.url + "/api/sessions", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = httpx.options(server.url + "/api/sessions", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
    with as_client(server, server.api_key) as client:
        response = client.get("/api/agents", headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "retry-after" in response.headers["access-control-expose-headers"].lower()


def test_the_environment_key_cannot_be_revoked_or_impersonated(fake_model: FakeAnthropic) -> None:
    """ASH_API_KEY is the operator's: revoking it through the API was accepted and silently outlived restarts."""
    env_key = "ash_" + "e" * 43
    with AshServer(fake_model.url, env={"ASH_API_KEY": env_key}) as server:
        with as_client(server, env_key) as operator:
            listed = operator.get("/api/api-keys").json()["keys"]
            (mine,) = [k for k in listed if k["label"] == "ASH_API_KEY"]
            assert_error(operator.delete(f"/api/api-keys/{mine['id']}"), 409, "environment")
            assert operator.get(f"/api/api-keys/{mine['id']}").json()["apiKey"]["revokedAt"] is None
            for label in ("ASH_API_KEY", "ash_api_key "):
                assert_error(operator.post("/api/api-keys", json={"label": label}), 400, "reserved")
            other = operator.post("/api/api-keys", json={"label": "a second key"}).json()
            assert operator.delete(f"/api/api-keys/{other['id']}").status_code == 204  # others revoke as before
        server.stop()
        server.start()
        with as_client(server, env_key) as operator:
            assert operator.get("/api/sessions").status_code == 200
