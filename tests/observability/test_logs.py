"""Server logs are JSON lines with request/session ids, and never carry a secret or a message body at info."""

from __future__ import annotations

import json

import pytest

from ash_server.observability.logs import ContextFilter
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow

PROMPT = "the secret plan is pineapple-7731"
REPLY = "understood: mango-4412"


def test_logs_are_json_with_ids_and_no_secrets(model: FakeAnthropic) -> None:
    model.on("the secret plan", text(REPLY))
    api_key = "ash_this-is-the-configured-key-0123456789"
    env = {"ASH_API_KEY": api_key, "ASH_LOG_LEVEL": "info", "ASH_DEBUG_TIMING": "1"}
    server = AshServer(model.url, env=env).start()
    try:
        with server.client() as client:
            path = str(REPO / "examples" / "hello-agent")
            assert client.post("/api/agents", json={"name": "logged", "path": path}).status_code == 201
            created = client.post("/api/sessions", json={"agent": "logged"}, headers={"X-Request-ID": "req-abc.1"})
            assert created.headers["x-request-id"] == "req-abc.1"
            sid = created.json()["session"]["id"]
            with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": PROMPT}) as r:
                assert REPLY in "".join(r.iter_text())
            client.post(f"/api/sessions/{sid}/stop")
        server.stop()
        log = server.log()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
        assert any(line.get("session_id") == sid for line in lines), "turn logs carry their session"
        # ASH_DEBUG_TIMING=1: one line per turn with where its time went, every part measured.
        timing = next(line["message"] for line in lines if line["message"].startswith("timing "))
        parts = dict(part.split("=", 1) for part in timing.split()[1:])
        assert parts["session"] == sid
        for name in ("server_lookup_ms", "bridge_first_event_ms", "sdk_first_token_ms", "total_ms"):
            assert float(parts[name]) > 0, name
        assert float(parts["bridge_first_event_ms"]) <= float(parts["sdk_first_token_ms"]) < float(parts["total_ms"])
        for secret in (api_key, "sk-ant-test-server-key", PROMPT, "pineapple-7731", REPLY, "mango-4412"):
            assert secret not in log, f"{secret!r} reached the log"
    finally:
        server.cleanup()


def test_secret_shaped_strings_are_masked() -> None:
    mask = ContextFilter(["configured-secret-value"]).mask
    assert mask("key ash_abcdefghijklmnopqrstuvwxyz used") == "key *** used"
    assert mask("upstream said sk-ant-api03-AAAABBBBCCCC") == "upstream said ***"
    assert mask("token configured-secret-value here") == "token *** here"
    assert mask("nothing to hide") == "nothing to hide"
