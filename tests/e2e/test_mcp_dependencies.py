"""An agent's MCP server with Python dependencies works as written (issue 17): `requirements.txt` is installed at
deploy time in a sandbox that reaches only the package registries, cached by content, and the agent's stdio
server (examples/mcp-agent, the worked example of docs/mcp.md) runs in the session's sandbox and answers a tool
call. Needs the network to PyPI, as `scripts/install.sh` does."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "mcp-agent"


def _tool_results(model: FakeAnthropic) -> list[object]:
    found = []
    for request in model.requests:
        for message in request["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                found += [b.get("content") for b in content if b.get("type") == "tool_result"]
    return found


def test_a_python_mcp_server_with_dependencies_answers(model: FakeAnthropic) -> None:
    call = tool_use("mcp__wordsmith__count_words", {"text": "one two three four five"})
    model.on("how many words", [call, text("Five words.")])
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            deployed = client.post("/api/agents", json={"name": "words", "path": str(EXAMPLE)})
            assert deployed.status_code == 201, deployed.text
            built = deployed.json()["dependencies"]
            assert (built["kinds"], built["cached"]) == (["python"], False)
            again = client.post("/api/agents", json={"name": "words-too", "path": str(EXAMPLE)}).json()
            assert again["dependencies"] == {**built, "cached": True, "seconds": 0.0}

            bundle = server.data_dir / "dependencies" / built["fingerprint"]
            assert (bundle / "python" / "mcp").is_dir()
            assert bundle.stat().st_uid == os.getuid()  # the server's again: sandboxes only read it

            sid = client.post("/api/sessions", json={"agent": "words"}).json()["session"]["id"]
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "how many words?"}) as r:
                lines = list(r.iter_lines())
        init = next(
            json.loads(lines[i + 1][6:])
            for i, line in enumerate(lines)
            if line == "event: message" and '"subtype":"init"' in lines[i + 1]
        )
        servers = {s["name"]: s["status"] for s in init["mcp_servers"]}
        assert servers == {"wordsmith": "connected"}, init["mcp_servers"]
        results = _tool_results(model)
        assert results and "5" in json.dumps(results[-1]), results
    finally:
        server.cleanup()


def test_a_build_that_fails_refuses_the_deploy(model: FakeAnthropic, tmp_path: Path) -> None:
    server = AshServer(model.url).start()
    try:
        files = {
            "CLAUDE.md": "hello",
            "requirements.txt": "this-package-does-not-exist-ash-test==0.0.1\n",
        }
        upload = [{"path": k, "content": base64.b64encode(v.encode()).decode()} for k, v in files.items()]
        with server.client() as client:
            refused = client.post("/api/agents", json={"name": "broken", "files": upload})
            assert refused.status_code == 400, refused.text
            assert "python dependencies did not install" in refused.json()["error"]
            assert "this-package-does-not-exist-ash-test" in refused.json()["error"]
            assert client.get("/api/agents/broken").status_code == 404  # nothing was stored
    finally:
        server.cleanup()


def test_an_mcp_server_that_fails_to_start_says_why(model: FakeAnthropic) -> None:
    failing = {"command": "python3", "args": ["-c", "import nope_not_installed"]}
    files = {"CLAUDE.md": "hello", ".mcp.json": json.dumps({"mcpServers": {"broken tool": failing}})}
    upload = [{"path": k, "content": base64.b64encode(v.encode()).decode()} for k, v in files.items()]
    server = AshServer(model.url).start()
    try:
        with server.client() as client:
            assert client.post("/api/agents", json={"name": "broken", "files": upload}).status_code == 201
            sid = client.post("/api/sessions", json={"agent": "broken"}).json()["session"]["id"]
            for _ in range(2):  # said once per sandbox, not at every turn
                with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "hi"}) as r:
                    lines = list(r.iter_lines())
                    errors = [json.loads(lines[i + 1][6:]) for i, x in enumerate(lines) if x == "event: error"]
                if _ == 0:
                    assert [e["code"] for e in errors] == ["mcp_server_failed"], errors
                    said = errors[0]["error"]
                    assert said.startswith("MCP server 'broken tool' failed to start: ")
                    assert "ModuleNotFoundError: No module named 'nope_not_installed'" in said
                else:
                    assert errors == []
            timeline = client.get(f"/api/sessions/{sid}/events").json()["events"]
            assert [json.loads(e["data"])["error"] for e in timeline if e["type"] == "error"] == [said]
        assert "MCP server 'broken tool' failed to start" in server.log_path.read_text()
    finally:
        server.cleanup()
