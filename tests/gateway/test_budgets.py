"""Spending limits hold at the model gateway, where the agent cannot reach them: the model allowlist, the
`max_tokens` ceiling, calls per minute per session, tokens per session and per tenant per day. A sandbox once sent
100 calls of max_tokens 64000 in 1.95 s, all forwarded. The gateway runs on a real Unix socket against the fake
Messages API, over a real store (usage rows are what the token budgets read), with a raw HTTP client."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ash_server.credentials import CredentialService
from ash_server.gateway import Gateway
from ash_server.gateway.model import ModelRoute
from ash_server.settings import Settings
from ash_server.store.database import create_engine, upgrade
from ash_server.store.models import Agent, SessionRow, Tenant, utcnow
from ash_server.store.repository import Store
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.metrics import samples, total
from tests.support.rawhttp import Response, request
from tests.support.server import short_tempdir

TENANT = "budgeted"


@dataclass
class Budgeted:
    gateway: Gateway
    store: Store
    folder: Path

    async def sandbox(self, name: str) -> Path:
        """A session of the tenant with a model socket of its own."""
        now = utcnow()
        session = await self.store.add_session(
            SessionRow(
                tenant_id=TENANT,
                agent_name="agent",
                agent_version=1,
                status="active",
                config={},
                created_at=now,
                last_active_at=now,
            )
        )
        route = ModelRoute(f"sbx-{name}", str(session.id), TENANT, "agent", None)
        socket = self.folder / f"{name}.sock"
        await self.gateway.model.open(route, socket, None)
        return socket

    def refusals(self, reason: str) -> float:
        return total(samples(self.gateway.metrics.render().decode()), "ash_gateway_refusals_total", reason=reason)


def call(model: str = "claude-test", max_tokens: int = 100, path: str = "/v1/messages") -> tuple[str, bytes]:
    body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "spend"}]}
    return path, json.dumps(body).encode()


async def send(socket: Path, target: str, body: bytes) -> Response:
    (response,) = await request(socket, target, body, headers=[("content-type", "application/json")])
    return response


def error_of(response: Response) -> tuple[str, str]:
    error = json.loads(response.body)["error"]
    return error["type"], error["message"]


async def budgeted(model: FakeAnthropic, **limits: object) -> AsyncIterator[Budgeted]:
    folder = short_tempdir()
    database = f"sqlite+aiosqlite:///{folder / 'ash.db'}"
    await asyncio.to_thread(upgrade, database)
    store = Store(create_engine(database))
    settings = Settings(data_dir=folder, anthropic_base_url=model.url, **limits)  # type: ignore[arg-type]
    gateway = Gateway(settings, store, CredentialService.from_settings(store, settings))
    await store.add_tenant(Tenant(id=TENANT, label=TENANT, created_at=utcnow()))
    now = utcnow()
    await store.save_agent(
        Agent(
            tenant_id=TENANT,
            name="agent",
            version=1,
            path="/a",
            managed=True,
            env={},
            config={},
            created_at=now,
            updated_at=now,
        )
    )
    try:
        yield Budgeted(gateway, store, folder)
    finally:
        await gateway.aclose()
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def limited(model: FakeAnthropic) -> AsyncIterator[Budgeted]:
    model.on("spend", text("spent"))
    async for harness in budgeted(
        model, gateway_models="claude-test,claude-haiku-*", gateway_max_tokens=1000, gateway_calls_per_minute=5
    ):
        yield harness


async def test_models_outside_the_allowlist_are_refused(limited: Budgeted) -> None:
    socket = await limited.sandbox("models")
    refused = await send(socket, *call(model="claude-opus-9"))
    assert refused.status == 400 and error_of(refused) == (
        "invalid_request_error",
        "model 'claude-opus-9' is not allowed (ASH_GATEWAY_MODELS)",
    )
    assert (await send(socket, *call(model="claude-haiku-5"))).status == 200
    assert (await send(socket, *call(model="x", path="/v1/messages/count_tokens"))).status == 400
    assert limited.refusals("model") == 2


async def test_max_tokens_above_the_ceiling_is_refused(limited: Budgeted) -> None:
    socket = await limited.sandbox("max-tokens")
    refused = await send(socket, *call(max_tokens=64_000))
    assert refused.status == 400 and "ceiling of 1000 (ASH_GATEWAY_MAX_TOKENS)" in error_of(refused)[1]
    assert (await send(socket, *call(max_tokens=1000))).status == 200


async def test_calls_past_the_minutes_allowance_get_429_with_retry_after(limited: Budgeted) -> None:
    socket, other = await limited.sandbox("burst"), await limited.sandbox("calm")
    statuses = [(await send(socket, *call())).status for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    refused = await send(socket, *call())
    assert error_of(refused)[0] == "rate_limit_error" and int(refused.headers[b"retry-after"]) >= 1
    assert refused.headers[b"x-should-retry"] == b"false"
    assert (await send(other, *call())).status == 200  # per session
    assert limited.refusals("calls_per_minute") == 4


async def test_session_and_tenant_token_budgets(model: FakeAnthropic) -> None:
    model.on("spend", text("spent"))
    # The fake reports 10 input and 2 output tokens for this call: 12, past the session's 10 at once.
    async for harness in budgeted(model, gateway_session_tokens=10, gateway_tenant_tokens_per_day=20):
        first = await harness.sandbox("first")
        assert (await send(first, *call())).status == 200
        refused = await send(first, *call())
        assert refused.status == 403 and "(ASH_GATEWAY_SESSION_TOKENS)" in error_of(refused)[1], refused.body
        second = await harness.sandbox("second")
        assert (await send(second, *call())).status == 200
        await asyncio.sleep(0.2)  # the usage rows are written after the response
        third = await harness.sandbox("third")
        # The tenant has used 24 tokens in the last 24 hours (two calls of 12), past its 20.
        refused = await send(third, *call())
        assert refused.status == 429 and "(ASH_GATEWAY_TENANT_TOKENS_PER_DAY)" in error_of(refused)[1]
        assert harness.refusals("session_tokens") == 1 and harness.refusals("tenant_tokens") == 1


async def test_a_new_server_reads_a_sessions_spending_from_the_usage_table(model: FakeAnthropic) -> None:
    model.on("spend", text("spent"))
    async for harness in budgeted(model, gateway_session_tokens=10):
        socket = await harness.sandbox("before")
        assert (await send(socket, *call())).status == 200
        await asyncio.sleep(0.2)
        (session_id,) = [r.session_id for r in harness.gateway.model._routes.values()]
        await harness.gateway.model.close("sbx-before")  # the budget's count goes with the sandbox
        route = ModelRoute("sbx-after", session_id, TENANT, "agent", None)
        again = harness.folder / "after.sock"
        await harness.gateway.model.open(route, again, None)
        refused = await send(again, *call())
        assert refused.status == 403, refused.body
        # Another server on the same database: the tenant's last 24 h come from the usage table too.
        settings = Settings(data_dir=harness.folder, anthropic_base_url=model.url, gateway_tenant_tokens_per_day=10)
        other = Gateway(settings, harness.store, CredentialService.from_settings(harness.store, settings))
        try:
            route = ModelRoute("sbx-elsewhere", str(uuid.uuid4()), TENANT, "agent", None)
            await other.model.open(route, harness.folder / "elsewhere.sock", None)
            refused = await send(harness.folder / "elsewhere.sock", *call())
            assert refused.status == 429 and "used 12 of its 10 tokens" in error_of(refused)[1], refused.body
        finally:
            await other.aclose()
