"""The network edge in-process: whose X-Forwarded-For is believed, and CORS only for configured origins."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import ValidationError

from ash_server.api.middleware.network import install_network_middleware
from ash_server.settings import Settings


def app_with(**settings: str) -> FastAPI:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        return {"client": request.client.host if request.client else None, "scheme": request.url.scheme}

    install_network_middleware(app, Settings(**settings))  # type: ignore[arg-type]
    return app


async def whoami(app: FastAPI, peer: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://ash") as client:
        response = await client.get("/whoami", headers=headers or {})
        result: dict[str, str] = response.json()
        return result


async def test_forwarding_headers_are_ignored_by_default() -> None:
    seen = await whoami(app_with(), "127.0.0.1", {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert seen == {"client": "127.0.0.1", "scheme": "http"}


async def test_a_trusted_proxy_names_the_client() -> None:
    app = app_with(trusted_proxies="10.0.0.0/8, 192.0.2.1")
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    assert await whoami(app, "10.1.2.3", headers) == {"client": "203.0.113.9", "scheme": "https"}
    # A chain of trusted proxies: the client is the right-most address that is not one of them; what the client
    # itself wrote in front of that cannot be believed.
    chain = {"X-Forwarded-For": "1.1.1.1, 203.0.113.9, 192.0.2.1"}
    assert (await whoami(app, "10.1.2.3", chain))["client"] == "203.0.113.9"
    # An untrusted peer's header is ignored.
    assert (await whoami(app, "198.51.100.4", headers))["client"] == "198.51.100.4"


async def test_no_cors_unless_configured() -> None:
    transport = httpx.ASGITransport(app=app_with(), client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://ash") as client:
        response = await client.get("/whoami", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in response.headers


async def test_cors_for_configured_origins() -> None:
    app = app_with(allowed_origins="https://app.example.com,http://localhost:3000")
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://ash") as client:
        ok = await client.get("/whoami", headers={"Origin": "http://localhost:3000"})
        assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = await client.get("/whoami", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("name", "value"),
    [("trusted_proxies", "10.0.0.0/33"), ("trusted_proxies", "proxy.internal"), ("allowed_origins", "example.com")],
)
def test_malformed_values_are_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})  # type: ignore[arg-type]
