"""Model errors say what they are, at once (issue 17): a wrong key fails the first message without the CLI's
retry loop, a rejected request says so, a missing key is warned about at start, and the key can be checked."""

from __future__ import annotations

import json

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, api_error
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow
RIGHT_KEY = "sk-ant-right-key-for-the-fake"


def _errors_of_turn(server: AshServer, prompt: str) -> list[dict[str, object]]:
    with server.client() as client:
        path = str(REPO / "examples" / "hello-agent")
        assert client.post("/api/agents", json={"name": "hello", "path": path}).status_code in (201, 200)
        sid = client.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": prompt}) as response:
            assert response.status_code == 200
            lines = list(response.iter_lines())
    assert "event: done" in lines
    return [json.loads(lines[i + 1][6:]) for i, line in enumerate(lines) if line == "event: error"]


def test_a_wrong_key_fails_the_turn_at_once_and_says_so() -> None:
    with FakeAnthropic(api_key=RIGHT_KEY) as model:
        # The CLI's own default (10 retries with back-off): the gateway's answer must stop it, not the test's env.
        server = AshServer(model.url, env={"ANTHROPIC_API_KEY": "sk-ant-wrong", "CLAUDE_CODE_MAX_RETRIES": "10"})
        server.start()
        try:
            errors = _errors_of_turn(server, "hello?")
            assert [e["code"] for e in errors] == ["authentication_failed"]
            assert str(errors[0]["error"]).startswith("model authentication failed: ")
            calls = [r for r in model.request_log if r["path"].endswith("/v1/messages")]
            assert len(calls) == 1, f"the CLI retried a 401 {len(calls) - 1} times"
            with server.client() as client:
                check = client.get("/api/model/check").json()
                assert client.get("/health").json()["modelKey"] is True
            assert check == {
                "keyConfigured": True,
                "ok": False,
                "status": 401,
                "error": "model authentication failed: invalid x-api-key",
            }
            log = server.log_path.read_text()
            assert "refused the credential of session" in log
            assert "sk-ant-wrong" not in log
        finally:
            server.cleanup()


def test_the_right_key_checks_ok_and_a_rejected_request_says_so() -> None:
    with FakeAnthropic(api_key=RIGHT_KEY) as model:
        model.on(
            "too big",
            api_error(400, "invalid_request_error", "messages.0.content: not allowed here", should_retry=None),
        )
        server = AshServer(model.url, env={"ANTHROPIC_API_KEY": RIGHT_KEY}).start()
        try:
            with server.client() as client:
                assert client.get("/api/model/check").json() == {
                    "keyConfigured": True,
                    "ok": True,
                    "status": 200,
                    "error": None,
                }
                assert client.get("/api/model/check", headers={"Authorization": "Bearer nope"}).status_code == 401
            errors = _errors_of_turn(server, "this is too big")
            assert [str(e["error"]) for e in errors] == [
                "model rejected the request: API Error: 400 messages.0.content: not allowed here"
            ]
        finally:
            server.cleanup()


def test_no_key_is_warned_about_at_start() -> None:
    with FakeAnthropic(api_key=RIGHT_KEY) as model:
        server = AshServer(model.url, env={"ANTHROPIC_API_KEY": ""}).start()
        try:
            with server.client() as client:
                assert client.get("/health").json()["modelKey"] is False
                check = client.get("/api/model/check").json()
            assert (check["keyConfigured"], check["ok"], check["status"]) == (False, False, 401)
            assert check["error"].startswith("no model key is set: ")
            assert "no model key: ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN are unset" in server.log_path.read_text()
        finally:
            server.cleanup()
