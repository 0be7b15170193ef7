"""The reference's own TypeScript SDK and CLI, unchanged, against a real Ash server with the fake model: the shapes
and strings they depend on (issue 14's shape fixes), each checked through the client that depends on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.reference_ts import ReferenceClients
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow

HELLO = str(REPO / "examples" / "hello-agent")
REFERENCE_EVENT_TYPES = {"text", "tool_start", "tool_result", "reasoning", "error", "turn_complete", "lifecycle"}


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> ReferenceClients:
    return ReferenceClients.install(tmp_path_factory.mktemp("reference-ts"))


def test_sdk_shapes(clients: ReferenceClients, ash_server: AshServer, model: FakeAnthropic) -> None:
    model.on("ts hello", text("Hello from TS."))
    out = clients.sdk(
        f"""
        out.health = await attempt(() => client.health());
        await client.deployAgent('ts-agent', {json.dumps(HELLO)});
        out.updated = await attempt(() => client.updateAgent('ts-agent', {{ description: 'An agent for TS' }}));
        out.fetched = await attempt(() => client.getAgent('ts-agent'));
        const session = await client.createSession('ts-agent');
        const stream = await client.sendMessage(session.id, 'ts hello');
        out.streamed = await stream.text();
        out.total = await attempt(() => client.listSessionsWithTotal({{ agent: 'ts-agent' }}));
        out.events = await attempt(() => client.listSessionEvents(session.id));
        out.logs = await attempt(() => client.getSessionLogs(session.id, {{ after: -1 }}));
        out.paused = await attempt(() => client.pauseSession(session.id));
        await client.deleteAgent('ts-agent');
        out.resumeAfterDelete = await attempt(() => client.resumeSession(session.id));
        out.unknownSession = await attempt(() => client.getSession('00000000-0000-4000-8000-000000000000'));
        out.unknownAgent = await attempt(() => client.getAgent('no-such-agent'));
        """,
        url=ash_server.url,
        key=ash_server.api_key,
    )
    health = out["health"]["value"]
    assert out["health"]["ok"] and isinstance(health["uptime"], int) and health["status"] == "ok"
    assert out["updated"]["value"]["description"] == "An agent for TS"
    assert out["fetched"]["value"]["description"] == "An agent for TS"  # kept, not only echoed
    assert "Hello from TS." in out["streamed"] and "event: done" in out["streamed"]
    assert out["total"]["ok"] and out["total"]["value"]["total"] == 1 and len(out["total"]["value"]["sessions"]) == 1
    kinds = {e["type"] for e in out["events"]["value"]}
    assert kinds <= REFERENCE_EVENT_TYPES and {"lifecycle", "text", "turn_complete"} <= kinds
    assert out["logs"]["ok"], out["logs"]
    assert out["paused"]["ok"] and out["paused"]["value"]["status"] == "paused"
    # Resuming a session whose agent is gone: 404 as the reference, even though its sandbox is still warm.
    assert out["resumeAfterDelete"]["status"] == 404
    assert out["resumeAfterDelete"]["error"].startswith("Agent not found")
    assert (out["unknownSession"]["status"], out["unknownSession"]["error"].split(":")[0]) == (404, "Session not found")
    assert (out["unknownAgent"]["status"], out["unknownAgent"]["error"].split(":")[0]) == (404, "Agent not found")


def test_sdk_agent_versions_and_file_writes(clients: ReferenceClients, ash_server: AshServer) -> None:
    """Every agent-version and agent-file call of the reference SDK: each succeeds, and what it changed is what a
    new session of the agent then runs."""
    out = clients.sdk(
        f"""
        await client.deployAgent('ts-versions', {json.dumps(HELLO)});
        out.written = await attempt(() => client.uploadAgentFiles('ts-versions', [
          {{ path: 'kb/a.md', content: Buffer.from('alpha').toString('base64') }},
        ]));
        out.created = await attempt(() => client.createAgentVersion('ts-versions', {{
          systemPrompt: 'You are TS version three.', releaseNotes: 'from ts',
        }}));
        out.listed = await attempt(() => client.listAgentVersions('ts-versions'));
        out.got = await attempt(() => client.getAgentVersion('ts-versions', 3));
        out.updated = await attempt(() => client.updateAgentVersion('ts-versions', 3, {{ name: 'three' }}));
        out.activated = await attempt(() => client.activateAgentVersion('ts-versions', 3));
        out.agent = await attempt(() => client.getAgent('ts-versions'));
        const session = await client.createSession('ts-versions');
        out.prompt = await attempt(() => client.getSessionFile(session.id, 'CLAUDE.md'));
        out.deletedFile = await attempt(() => client.deleteAgentFile('ts-versions', 'kb/a.md'));
        out.rolledBack = await attempt(() => client.activateAgentVersion('ts-versions', 1));
        out.deletedVersion = await attempt(() => client.deleteAgentVersion('ts-versions', 3));
        out.gone = await attempt(() => client.getAgentVersion('ts-versions', 3));
        out.after = await attempt(() => client.listAgentVersions('ts-versions'));
        """,
        url=ash_server.url,
        key=ash_server.api_key,
    )
    failed = {k: v for k, v in out.items() if k != "gone" and not v["ok"]}
    assert not failed, failed
    assert out["written"]["value"]["written"] == 1
    # The SDK types these as an AgentVersion; the reference (and we) send {version: ...}.
    assert out["created"]["value"]["version"]["versionNumber"] == 3
    assert [v["versionNumber"] for v in out["listed"]["value"]] == [3, 2, 1]
    assert out["got"]["value"]["version"]["systemPrompt"] == "You are TS version three."
    assert out["updated"]["value"]["version"]["name"] == "three"
    assert out["agent"]["value"]["version"] == 3
    assert out["prompt"]["value"]["content"] == "You are TS version three."
    assert out["deletedFile"]["value"]["deleted"] is True
    assert out["gone"]["status"] == 404 and out["gone"]["error"].startswith("Version not found")
    assert [(v["versionNumber"], v["isActive"]) for v in out["after"]["value"]] == [(4, False), (2, False), (1, True)]


def test_sdk_error_strings_for_keys_and_ended_sessions(
    clients: ReferenceClients, ash_server: AshServer, model: FakeAnthropic
) -> None:
    wrong = clients.sdk("out.r = await attempt(() => client.listAgents());", url=ash_server.url, key="ash_wrong")
    assert wrong["r"]["status"] == 401 and wrong["r"]["error"].startswith("Invalid API key")
    missing = clients.sdk("out.r = await attempt(() => client.listAgents());", url=ash_server.url, key="")
    assert missing["r"]["status"] == 401 and missing["r"]["error"].startswith("Missing Authorization header")
    ended = clients.sdk(
        f"""
        await client.deployAgent('ts-ended', {json.dumps(HELLO)});
        const session = await client.createSession('ts-ended');
        await client.endSession(session.id);
        out.r = await attempt(() => client.sendMessage(session.id, 'too late'));
        """,
        url=ash_server.url,
        key=ash_server.api_key,
    )
    assert ended["r"]["status"] == 400 and ended["r"]["error"].startswith("Session is ended")


def test_the_reference_cli_reads_the_config_ash_start_writes(
    clients: ReferenceClients, ash_server: AshServer, tmp_path: Path
) -> None:
    """Our `ash` writes ~/.ash/config.json in both spellings; the reference CLI, with no environment, finds the
    server and key there."""
    from ash_cli.config import StoredConfig, save_stored

    save_stored(tmp_path / ".ash" / "config.json", StoredConfig(server_url=ash_server.url, api_key=ash_server.api_key))
    with httpx.Client(base_url=ash_server.url, headers={"Authorization": f"Bearer {ash_server.api_key}"}) as api:
        assert api.post("/api/agents", json={"name": "cli-seen", "path": HELLO}).status_code == 201
    listed = clients.cli("agent", "list", env={"HOME": str(tmp_path)})
    assert listed.returncode == 0, listed.stderr
    assert "cli-seen" in listed.stdout
    health = clients.cli("health", env={"HOME": str(tmp_path)})
    assert health.returncode == 0 and "ok" in health.stdout, health.stderr


def test_openapi_is_also_where_the_reference_serves_it(ash_server: AshServer) -> None:
    with ash_server.client() as api:  # behind a key, unlike the reference's (ASH_PUBLIC_DOCS opens it)
        spec = api.get("/docs/json")
        assert spec.status_code == 200
        assert spec.json() == api.get("/openapi.json").json()


@pytest.fixture(scope="module")
def ash_server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    with AshServer(fake_model.url) as server:
        yield server
