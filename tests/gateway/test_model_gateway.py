"""The model gateway on a real Unix socket, against the fake Messages API on loopback, with a raw HTTP client."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ash_server.credentials import CredentialService, UpstreamAuth
from ash_server.gateway import Gateway
from ash_server.gateway.model import ModelGateway, ModelRoute
from ash_server.gateway.usage import CallUsage
from ash_server.settings import Settings
from ash_server.store.database import create_engine, upgrade
from ash_server.store.repository import Store
from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.rawhttp import request
from tests.support.server import short_tempdir

SERVER_KEY = "sk-ant-gateway-test-key"


@dataclass
class Harness:
    gateway: ModelGateway
    socket: Path
    usage: list[tuple[ModelRoute, CallUsage]]


def body(prompt: str, *, stream: bool) -> bytes:
    return json.dumps(
        {"model": "claude-test", "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    ).encode()


@pytest.fixture
async def harness(model: FakeAnthropic) -> AsyncIterator[Harness]:
    folder = short_tempdir()
    usage: list[tuple[ModelRoute, CallUsage]] = []

    async def sink(route: ModelRoute, call: CallUsage) -> None:
        usage.append((route, call))

    # A path prefix in the upstream URL is kept.
    gateway = ModelGateway(model.url + "/gw/prefix/", max_request_bytes=64 * 1024, on_usage=sink)
    route = ModelRoute("sbx-1", "session-1", "tenant-1", "agent-1", UpstreamAuth("x-api-key", SERVER_KEY, "cred-1"))
    await gateway.open(route, folder / "model.sock", None)
    try:
        yield Harness(gateway, folder / "model.sock", usage)
    finally:
        await gateway.aclose()
        shutil.rmtree(folder, ignore_errors=True)


async def test_streaming_is_relayed_byte_for_byte_as_it_arrives(harness: Harness, model: FakeAnthropic) -> None:
    model.on("stream me", text("Streamed through the gateway, é and all.", chunks=4, delay=0.3))
    seen_before_end: list[bool] = []

    def on_data(_chunk: bytes) -> None:
        # The first bytes reach the client while the fake is still streaming: nothing buffers the whole body.
        if not seen_before_end:
            seen_before_end.append(model.request_log[-1]["completed"])

    [response] = await request(
        harness.socket,
        "/v1/messages?beta=true",
        body("stream me", stream=True),
        headers=[
            ("content-type", "application/json"),
            ("x-api-key", "sk-ash-gateway-placeholder"),
            ("authorization", "Bearer smuggled"),
            ("anthropic-version", "2023-06-01"),
        ],
        on_data=on_data,
    )
    entry = model.request_log[-1]
    assert response.status == 200 and response.headers[b"content-type"].startswith(b"text/event-stream")
    assert response.body == entry["response_body"] and entry["completed"]
    assert len(response.chunks) > 1 and seen_before_end == [False]
    # The gateway chose the credential; what the sandbox sent never left the host.
    assert entry["path"] == "/gw/prefix/v1/messages" and entry["query"] == "beta=true"
    assert entry["headers"]["x-api-key"] == SERVER_KEY
    assert "authorization" not in entry["headers"] and entry["headers"]["anthropic-version"] == "2023-06-01"
    [(route, usage)] = harness.usage
    assert route.session_id == "session-1"
    assert (usage.model, usage.input_tokens, usage.tool_calls) == ("claude-test", 10, 0)
    assert usage.output_tokens == len("Streamed through the gateway, é and all.") // 4 + 1


async def test_json_replies_and_keep_alive(harness: Harness, model: FakeAnthropic) -> None:
    model.on("use a tool", tool_use("Bash", {"command": "ls"}))
    responses = await request(harness.socket, "/v1/messages", body("use a tool", stream=False), again=2)
    assert [r.status for r in responses] == [200, 200]
    assert [r.body for r in responses] == [e["response_body"] for e in model.request_log[-2:]]
    assert [u.tool_calls for _, u in harness.usage] == [1, 1]


async def test_count_tokens_is_forwarded_but_not_metered(harness: Harness, model: FakeAnthropic) -> None:
    [response] = await request(harness.socket, "/v1/messages/count_tokens", body("count", stream=False))
    assert model.request_log[-1]["path"] == "/gw/prefix/v1/messages/count_tokens"
    assert (
        response.status == model.request_log[-1]["status"] and response.body == model.request_log[-1]["response_body"]
    )
    assert harness.usage == []


async def test_only_the_messages_api_is_reachable(harness: Harness, model: FakeAnthropic) -> None:
    for method, target in [("GET", "/v1/models"), ("POST", "/api/hello"), ("GET", "/v1/messages"), ("POST", "/")]:
        [response] = await request(harness.socket, target, method=method)
        assert response.status == 404, target
        assert json.loads(response.body)["error"]["type"] == "not_found_error"
    assert model.request_log == []


async def test_request_bodies_are_capped(harness: Harness, model: FakeAnthropic) -> None:
    [response] = await request(harness.socket, "/v1/messages", b"x" * (64 * 1024 + 1))
    assert response.status == 413 and json.loads(response.body)["error"]["type"] == "request_too_large"
    assert model.request_log == []


async def test_a_revoked_credential_stops_at_the_gateway(harness: Harness, model: FakeAnthropic) -> None:
    assert harness.gateway.revoke("cred-1") == 1
    [response] = await request(harness.socket, "/v1/messages", body("hello", stream=True))
    assert response.status == 401 and json.loads(response.body)["error"]["type"] == "authentication_error"
    assert model.request_log == []


async def test_bearer_credentials_and_unreachable_upstream(model: FakeAnthropic) -> None:
    folder = short_tempdir()
    gateway = ModelGateway(model.url, max_request_bytes=1024 * 1024, on_usage=lambda *_: asyncio.sleep(0))
    dead = ModelGateway("http://127.0.0.1:9", max_request_bytes=1024 * 1024, on_usage=lambda *_: asyncio.sleep(0))
    try:
        await gateway.open(
            ModelRoute("sbx-b", "s", "t", "a", UpstreamAuth("authorization", "Bearer tok-123")), folder / "a.sock", None
        )
        await dead.open(ModelRoute("sbx-d", "s", "t", "a", None), folder / "d.sock", None)
        [ok] = await request(folder / "a.sock", "/v1/messages", body("hi", stream=False), headers=[("x-api-key", "x")])
        assert ok.status == 200
        headers = model.request_log[-1]["headers"]
        assert headers["authorization"] == "Bearer tok-123" and "x-api-key" not in headers
        [failed] = await request(folder / "d.sock", "/v1/messages", body("hi", stream=False))
        assert failed.status == 502 and "upstream unreachable" in json.loads(failed.body)["error"]["message"]
    finally:
        await gateway.aclose()
        await dead.aclose()
        shutil.rmtree(folder, ignore_errors=True)


async def test_credentials_deleted_through_another_server_are_revoked_here(model: FakeAnthropic) -> None:
    """A runner's heartbeat sweep: a credential deleted through a coordinator stops this server's sandboxes."""
    folder = short_tempdir()
    database = f"sqlite+aiosqlite:///{folder / 'ash.db'}"
    await asyncio.to_thread(upgrade, database)
    store = Store(create_engine(database))
    settings = Settings(data_dir=folder, anthropic_base_url=model.url, credential_key="k" * 32)
    credentials = CredentialService.from_settings(store, settings)
    gateway = Gateway(settings, store, credentials)
    try:
        kept = await credentials.create("t1", "anthropic", "sk-ant-kept-0123456789", None)
        gone = await credentials.create("t1", "anthropic", "sk-ant-gone-0123456789", None)
        for n, credential in enumerate((kept, gone)):
            auth = UpstreamAuth("x-api-key", "sk-ant-x", str(credential.id))
            route = ModelRoute(f"sbx-{n}", f"s-{n}", "t1", "agent", auth)
            await gateway.model.open(route, folder / f"model-{n}.sock", None)
        assert gateway.model.credentials_in_use() == {str(kept.id), str(gone.id)}
        assert await gateway.revoke_deleted() == 0  # both still there
        assert await store.delete_credential("t1", gone.id)  # as a coordinator would, in the shared database
        assert await gateway.revoke_deleted() == 1
        assert gateway.model.credentials_in_use() == {str(kept.id)}
        [response] = await request(folder / "model-1.sock", "/v1/messages", body("hello", stream=False))
        assert response.status == 401 and model.request_log == []
    finally:
        await gateway.aclose()
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)
