"""The model gateway and the egress proxy with a real server, real sandboxes and the real CLI (through the fake).

What is checked: the sandbox's model socket relays byte for byte and meters usage; the real key reaches the
model but never the sandbox (environment, process arguments, files); per-session credentials are used and never
shown; an agent's network allowlist lets one local destination through the egress proxy and refuses another.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.processes import pids_with_env
from tests.support.rawhttp import request
from tests.support.server import REPO, AshServer
from tests.support.sse import SseReader, turn
from tests.support.sse import new_session as create_session

pytestmark = pytest.mark.slow

SERVER_KEY = "sk-ant-test-server-key"  # what AshServer gives the server as ANTHROPIC_API_KEY
CREDENTIAL_KEY = "credential-master-key-for-tests-0123456789"
SESSION_KEY = "sk-ant-api03-per-session-credential-" + "q" * 24 + "9XyZ"
PLACEHOLDER = "sk-ash-gateway-placeholder"


@contextmanager
def gateway_server(model_url: str, runtime: str) -> Iterator[AshServer]:
    # `private`: the egress test allowlists services on the host's loopback, which only that ceiling admits.
    env = {
        "ASH_CREDENTIAL_KEY": CREDENTIAL_KEY,
        "ASH_NETWORK_CEILINGS": "default=private",
        "ASH_SANDBOX_RUNTIME": runtime,
    }
    server = AshServer(model_url, env=env).start()
    with server.client() as client:
        path = str(REPO / "examples" / "hello-agent")
        for name in ("gw-agent", "egress-agent"):
            assert client.post("/api/agents", json={"name": name, "path": path}).status_code == 201
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    with gateway_server(fake_model.url, "bwrap") as server:
        yield server


@pytest.fixture(scope="module")
def gvisor_server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    """The same under gVisor, for what the runtime changes: where the key could leak, how egress gets out."""
    with gateway_server(fake_model.url, "gvisor") as server:
        yield server


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def new_session(client: httpx.Client, agent: str = "gw-agent", **extra: Any) -> dict[str, Any]:
    return create_session(client, agent, **extra)


def tool_output(reader: SseReader) -> str:
    results = [f.data for f in reader.frames if f.event == "tool_result"]
    assert results, [f.event for f in reader.frames]
    content = results[0]["content"]
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content)
    return str(content)


def messages_body(prompt: str) -> bytes:
    return json.dumps(
        {"model": "claude-raw", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    ).encode()


def eventually(fetch: Callable[[], Any], done: Callable[[Any], bool], deadline_s: float = 30) -> Any:
    """Usage is written just after a response has been relayed, not before: poll for it (no timing asserted)."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def fake_usage(entry: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens the fake reported in one streamed response."""
    totals = (0, 0)
    for line in entry["response_body"].decode().splitlines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event["type"] == "message_start":
                totals = (event["message"]["usage"]["input_tokens"], totals[1])
            elif event["type"] == "message_delta":
                totals = (totals[0], event["usage"]["output_tokens"])
    return totals


def test_the_model_socket_relays_byte_for_byte_and_meters_usage(
    server: AshServer, client: httpx.Client, model: FakeAnthropic
) -> None:
    model.on("count my tokens", text("Counted them all.", chunks=3))
    session = new_session(client)
    sid, sandbox_id = session["id"], session["sandboxId"]
    socket = server.data_dir / "sandboxes" / "default" / sandbox_id / "model.sock"
    st = socket.stat()
    assert st.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert st.st_uid == 65534  # the sandbox user owns its socket; nobody else can use it

    reader = turn(client, sid, "count my tokens")
    assert [f.data["result"] for f in reader.frames if f.event == "turn_complete"] == ["Counted them all."]
    calls = [e for e in model.request_log if e["messages_endpoint"]]
    assert calls and all(e["headers"]["x-api-key"] == SERVER_KEY for e in calls)
    expected = [fake_usage(e) for e in calls]

    def usage_events() -> list[dict[str, Any]]:
        lifecycle = client.get(f"/api/sessions/{sid}/events", params={"type": "lifecycle"}).json()["events"]
        return [e for e in lifecycle if json.loads(e["data"]).get("action") == "model_usage"]

    timeline = eventually(usage_events, lambda found: len(found) >= len(calls))
    assert [(json.loads(e["data"])["inputTokens"], json.loads(e["data"])["outputTokens"]) for e in timeline] == expected
    events = client.get("/api/usage", params={"sessionId": sid}).json()["events"]
    assert {e["sessionId"] for e in events} == {sid} and {e["agentName"] for e in events} == {"gw-agent"}
    by_type: dict[str, float] = {}
    for event in events:
        by_type[event["eventType"]] = by_type.get(event["eventType"], 0) + event["value"]
    assert by_type["input_tokens"] == sum(i for i, _ in expected)
    assert by_type["output_tokens"] == sum(o for _, o in expected)
    assert by_type["message"] == len(calls)

    # A raw HTTP client on the sandbox's socket, as the CLI would be: the bytes that come out are the bytes the
    # model sent, and the call is metered to this session.
    model.on("raw client", text('Relayed unchanged: ünïcode, "quotes" and\nnewlines.', chunks=5, delay=0.05))
    [response] = asyncio.run(
        request(socket, "/v1/messages?beta=true", messages_body("raw client"), headers=[("x-api-key", "x")])
    )
    entry = model.request_log[-1]
    assert response.status == 200 and response.body == entry["response_body"] and len(response.chunks) > 1
    assert entry["headers"]["x-api-key"] == SERVER_KEY
    stats = eventually(
        lambda: client.get("/api/usage/stats", params={"sessionId": sid}).json()["stats"],
        lambda found: found["totalMessages"] > len(calls),
    )
    assert stats["totalMessages"] == len(calls) + 1
    assert stats["totalInputTokens"] == sum(i for i, _ in expected) + fake_usage(entry)[0]
    assert set(stats["byModel"]) == {str(c["body"]["model"]) for c in [*calls, entry]}
    client.delete(f"/api/sessions/{sid}")


def test_the_sandbox_never_holds_a_real_key(server: AshServer, client: httpx.Client, model: FakeAnthropic) -> None:
    check_no_real_key(server, client, model)


def test_a_gvisor_sandbox_never_holds_a_real_key(gvisor_server: AshServer, model: FakeAnthropic) -> None:
    with gvisor_server.client() as client:
        check_no_real_key(gvisor_server, client, model)


def check_no_real_key(server: AshServer, client: httpx.Client, model: FakeAnthropic) -> None:
    gvisor = server.env["ASH_SANDBOX_RUNTIME"] == "gvisor"
    snoop = (
        "env; echo; tr '\\0' ' ' < /proc/self/cmdline; echo; "
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; "
        "tr '\\0' '\\n' < $p/environ 2>/dev/null; done; ls -la ~ ~/.claude"
    )
    model.on("look around", [tool_use("Bash", {"command": snoop}), text("Looked.")])
    session = new_session(client)
    sid, sandbox_id = session["id"], session["sandboxId"]
    output = tool_output(turn(client, sid, "look around"))

    # The agent could see its sandbox's environments and command lines: the gateway's socket and the placeholder.
    assert f"ANTHROPIC_UNIX_SOCKET={server.data_dir}/sandboxes/default/{sandbox_id}/model.sock" in output
    assert PLACEHOLDER in output and "ANTHROPIC_BASE_URL=http://localhost" in output
    for secret in (SERVER_KEY, CREDENTIAL_KEY):
        assert secret not in output
    assert "HTTPS_PROXY" not in output  # no network allowed: no proxy either
    # The model got the real key.
    assert model.request_log[-1]["headers"]["x-api-key"] == SERVER_KEY

    # From the host: every process of the sandbox (environment and arguments), and every file it can write.
    # Under gVisor the host sees runsc's processes only (the bridge and the CLI live in gVisor's kernel), and the
    # sandbox's environment is in its OCI bundle.
    pids = pids_with_env("ASH_SANDBOX_ID", sandbox_id)
    assert len(pids) >= (1 if gvisor else 2)  # runsc; or the bridge and the CLI
    placeholders = 0
    for pid in pids:
        for name in ("environ", "cmdline"):
            data = Path(f"/proc/{pid}/{name}").read_bytes()
            assert SERVER_KEY.encode() not in data and CREDENTIAL_KEY.encode() not in data, (pid, name)
        placeholders += f"ANTHROPIC_API_KEY={PLACEHOLDER}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    folders = [server.data_dir / "sessions" / "default" / sid, server.data_dir / "sandboxes" / "default" / sandbox_id]
    if gvisor:
        bundle = server.data_dir / "run" / "gvisor" / "bundles" / sandbox_id
        assert f"ANTHROPIC_API_KEY={PLACEHOLDER}" in (bundle / "config.json").read_text()
        folders.append(bundle)
    else:
        assert placeholders >= 2  # the bridge and the CLI hold the placeholder, nothing else
    scanned = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert SERVER_KEY.encode() not in data and CREDENTIAL_KEY.encode() not in data, path
                scanned += 1
    assert scanned > 3  # CLAUDE.md, the transcript, .claude.json, bridge.json, ...
    client.delete(f"/api/sessions/{sid}")


def test_a_per_session_credential(server: AshServer, client: httpx.Client, model: FakeAnthropic) -> None:
    created = client.post("/api/credentials", json={"type": "anthropic", "key": SESSION_KEY, "label": "team A"})
    assert created.status_code == 201, created.text
    credential = created.json()["credential"]
    assert credential["hint"] == "sk-ant-…9XyZ" and credential["label"] == "team A" and credential["active"]
    listed = client.get("/api/credentials")
    one = client.get(f"/api/credentials/{credential['id']}")
    assert [c["id"] for c in listed.json()["credentials"]] == [credential["id"]] and one.status_code == 200
    for response in (created, listed, one):
        assert SESSION_KEY not in response.text and SESSION_KEY[10:30] not in response.text

    # Unknown, malformed or unusable credentials are refused before a session exists.
    assert (
        client.post("/api/sessions", json={"agent": "gw-agent", "credentialId": str(uuid.uuid4())}).status_code == 404
    )
    assert client.post("/api/sessions", json={"agent": "gw-agent", "credentialId": "nope"}).status_code == 404
    bedrock = client.post("/api/credentials", json={"type": "bedrock", "key": "AKIA-not-usable-yet-0000"})
    bedrock_id = bedrock.json()["credential"]["id"]
    refused = client.post("/api/sessions", json={"agent": "gw-agent", "credentialId": bedrock_id})
    assert refused.status_code == 400 and "bedrock" in refused.json()["error"]
    assert client.post("/api/credentials", json={"type": "azure", "key": "x" * 20}).status_code == 400

    model.on("whose key", text("Yours."))
    session = new_session(client, credentialId=credential["id"])
    before = len(model.request_log)
    turn(client, session["id"], "whose key")
    calls = [e for e in model.request_log[before:] if e["messages_endpoint"]]
    assert calls and {e["headers"]["x-api-key"] for e in calls} == {SESSION_KEY}
    assert client.get(f"/api/credentials/{credential['id']}").json()["credential"]["lastUsedAt"] is not None

    # The key is nowhere in plaintext: not in the database files, not in the server log.
    database = b"".join(p.read_bytes() for p in server.data_dir.glob("ash.db*"))
    assert b"credentials" in database and SESSION_KEY.encode() not in database
    assert SESSION_KEY not in server.log()

    # Deleting it takes it away from the running sandbox too: the next model call stops at the gateway.
    assert client.delete(f"/api/credentials/{credential['id']}").status_code == 204
    assert client.get(f"/api/credentials/{credential['id']}").status_code == 404
    assert client.delete(f"/api/credentials/{credential['id']}").status_code == 404
    before = len(model.request_log)
    reader = turn(client, session["id"], "whose key")
    assert reader.frames[-1].event == "done" and len(model.request_log) == before
    # And a new sandbox for the session is refused with the reason.
    assert client.post(f"/api/sessions/{session['id']}/stop").status_code == 200
    resumed = client.post(f"/api/sessions/{session['id']}/resume")
    assert resumed.status_code == 400 and "was deleted" in resumed.json()["error"]
    client.delete(f"/api/sessions/{session['id']}")
    client.delete(f"/api/credentials/{bedrock_id}")


def test_an_allowlist_lets_one_destination_through(
    server: AshServer, client: httpx.Client, model: FakeAnthropic, targets: tuple[int, int]
) -> None:
    check_allowlist(server, client, model, targets)


def test_an_allowlist_lets_one_destination_out_of_gvisor(
    gvisor_server: AshServer, model: FakeAnthropic, targets: tuple[int, int]
) -> None:
    with gvisor_server.client() as client:
        check_allowlist(gvisor_server, client, model, targets)


def check_allowlist(server: AshServer, client: httpx.Client, model: FakeAnthropic, targets: tuple[int, int]) -> None:
    allowed, refused = targets
    bad = client.patch("/api/agents/egress-agent/config", json={"network": {"allow": ["not a host"]}})
    assert bad.status_code == 400
    config = client.patch("/api/agents/egress-agent/config", json={"network": {"allow": [f"localhost:{allowed}"]}})
    assert config.status_code == 200 and config.json()["config"]["network"] == {"allow": [f"localhost:{allowed}"]}
    # curl is pointed at the proxy explicitly: NO_PROXY keeps loopback direct inside a sandbox (its own loopback),
    # and these targets are on the host's loopback, reachable only through the proxy's socket.
    curl = "curl -s --max-time 20 --noproxy '' -x \"$HTTP_PROXY\""
    command = (
        f'echo "proxy=$HTTPS_PROXY"; {curl} http://localhost:{allowed}/; echo; '
        f"{curl} -o /dev/null -w 'plain=%{{http_code}}\\n' http://localhost:{refused}/; "
        f"{curl} -p -o /dev/null -w 'tunnel=%{{http_connect}}\\n' http://localhost:{refused}/; "
        f"{curl} -p http://localhost:{allowed}/tunnelled; echo"
    )
    model.on("reach out", [tool_use("Bash", {"command": command}), text("Reached.")])
    session = new_session(client, agent="egress-agent")
    sandbox_dir = server.data_dir / "sandboxes" / "default" / session["sandboxId"]
    assert (sandbox_dir / "egress.sock").exists() and (sandbox_dir / "model.sock").exists()
    output = tool_output(turn(client, session["id"], "reach out"))
    assert "proxy=http://127.0.0.1:" in output
    assert output.count(f"hello from {allowed} host=") == 2  # plain HTTP and CONNECT
    assert "plain=403" in output and "tunnel=403" in output
    assert f"hello from {refused} host=" not in output
    client.delete(f"/api/sessions/{session['id']}")
    assert not sandbox_dir.exists()


def test_the_ash_sdk_client_reads_credentials_and_usage(
    server: AshServer, client: httpx.Client, model: FakeAnthropic
) -> None:
    """The generated `ash-ai-sdk` client parses these endpoints' answers (wire compatibility)."""
    from ash_sdk.api.credentials import delete_api_credentials_id, get_api_credentials, post_api_credentials
    from ash_sdk.api.usage import get_api_usage, get_api_usage_stats
    from ash_sdk.client import AuthenticatedClient
    from ash_sdk.models.post_api_credentials_body import PostApiCredentialsBody
    from ash_sdk.models.post_api_credentials_response_201 import PostApiCredentialsResponse201

    with AuthenticatedClient(base_url=server.url, token=server.api_key, raise_on_unexpected_status=True) as sdk:
        ids = []
        for kind in ("anthropic", "custom", "openai"):  # the types the SDK knows
            created = post_api_credentials.sync(client=sdk, body=PostApiCredentialsBody(type_=kind, key=SESSION_KEY))
            assert isinstance(created, PostApiCredentialsResponse201) and created.credential.type_ == kind
            ids.append(created.credential.id)
        listed = get_api_credentials.sync(client=sdk)
        assert listed is not None and [c.id for c in listed.credentials] == ids
        assert all(SESSION_KEY not in str(c.to_dict()) for c in listed.credentials)
        for credential_id in ids:
            assert delete_api_credentials_id.sync_detailed(client=sdk, id=credential_id).status_code == 204

        model.on("for the sdk", text("Metered."))
        session = new_session(client)
        turn(client, session["id"], "for the sdk")
        sid = uuid.UUID(session["id"])
        usage = eventually(
            lambda: get_api_usage.sync(client=sdk, session_id=sid, agent_name="gw-agent"),
            lambda found: found is not None and found.events,
        )
        assert usage is not None and {(e.session_id, e.agent_name) for e in usage.events} == {(sid, "gw-agent")}
        stats = get_api_usage_stats.sync(client=sdk, session_id=sid)
        assert stats is not None and stats.stats.total_messages >= 1
        assert stats.stats.total_input_tokens == sum(e.value for e in usage.events if e.event_type == "input_tokens")
        client.delete(f"/api/sessions/{session['id']}")
