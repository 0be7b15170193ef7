"""Schemathesis against a live server's own OpenAPI document: every operation, every check (server errors, status
codes, content types, response schemas and headers, positive and negative data, undeclared methods, `Allow`,
ignored and missing authentication), a bounded number of examples per operation and a fixed seed. Zero 5xx, zero
responses the document does not describe.

Left out of the main run: revoking API keys, which could revoke the fuzzer's own (fuzzed apart, with a key made for
it), and the stateful phase (FastAPI's document has no links between operations).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import REPO, AshServer

pytestmark = pytest.mark.slow

SEED = 18
MAX_EXAMPLES = 50
# Creating a session starts a real sandbox (~1.6 s on 2 cores), and a message to one runs a Claude Code CLI turn.
SANDBOX_EXAMPLES = 5
REVOKE_KEY = ("DELETE", "/api/api-keys/{key_id}")
# The operator's key (ASH_API_KEY), known before the server starts: schemathesis sends it as the document's bearer
# scheme says, and leaves it out or spoils it where it checks that the server insists on it.
FUZZ_KEY = "ash_" + "f" * 43
OPENAPI = json.loads((REPO / "docs" / "openapi.json").read_text())


def _operation(method: str, path: str, **settings: Any) -> dict[str, Any]:
    # By name: `include-method` and `include-path` together would take every DELETE and every method of the path.
    return {"include-name": f"{method} {path}", **settings}


def _config(*operations: dict[str, Any]) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": 60,
            "auth": {"openapi": {"apiKey": {"bearer": FUZZ_KEY}}},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "operations": list(operations),
        }
    )


sandboxes = {"generation": {"max-examples": SANDBOX_EXAMPLES}, "phases": {"coverage": {"enabled": False}}}
# Where the server refuses some schema-valid data for what no schema can say, its 400 is the documented answer.
refuses_some_valid = {
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 400, 401, 403, 404, 409, 429]}}
}
# The checked-in document: test_live_document_is_the_checked_in_one proves it is the one the live server serves
# (pytest collects an item per operation before any server runs).
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=_config(
        _operation(*REVOKE_KEY, enabled=False),
        _operation("POST", "/api/sessions", **sandboxes),
        _operation("POST", "/api/sessions/{session_id}/messages", **sandboxes),
        _operation("POST", "/api/sessions/{session_id}/resume", **sandboxes),
        # A deploy from `path` reads the server's disk: a folder under ASH_AGENT_ROOTS that holds CLAUDE.md.
        _operation("POST", "/api/agents", **refuses_some_valid),
        # A path component is at most 255 bytes (NAME_MAX): a schema counts characters, UTF-8 takes up to 4 each.
        _operation("POST", "/api/agents/{name}/files", **refuses_some_valid),
        _operation("POST", "/api/sessions/{session_id}/files", **refuses_some_valid),
        # expiresAt must be in the future: the schema cannot name the time of the request.
        _operation("POST", "/api/api-keys", **refuses_some_valid),
        # The Idempotency-Key header and the body's idempotencyKey, each valid, must be the same key.
        _operation("POST", "/api/queue", **refuses_some_valid),
    ),
)
revoke_schema = schemathesis.openapi.from_dict(OPENAPI, config=_config()).include(
    method=REVOKE_KEY[0], path=REVOKE_KEY[1]
)


@pytest.fixture(scope="module")
def fuzz_server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    env = {
        # Thousands of requests from one key and one IP, some without a key on purpose.
        "ASH_RATE_LIMIT_SESSIONS_PER_MINUTE": "0",
        "ASH_RATE_LIMIT_MESSAGES_PER_MINUTE": "0",
        "ASH_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE": "0",
        # Credentials are stored (sealed) only with a key: without one, creating them is a 503 by design.
        "ASH_CREDENTIAL_KEY": "fuzz-credential-key-0123456789",
        "ASH_API_KEY": FUZZ_KEY,
    }
    with AshServer(fake_model.url, env=env) as server:
        yield server


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_live_document_is_the_checked_in_one(fuzz_server: AshServer) -> None:
    response = httpx.get(fuzz_server.url + "/openapi.json", headers=_auth(fuzz_server.api_key))
    assert response.json() == OPENAPI


@schema.parametrize()
def test_every_operation_conforms(case: Case, fuzz_server: AshServer) -> None:
    case.call_and_validate(base_url=fuzz_server.url)


@pytest.fixture(scope="module")
def throwaway_key(fuzz_server: AshServer) -> dict[str, Any]:
    with fuzz_server.client() as client:
        created: dict[str, Any] = client.post("/api/api-keys", json={"label": "revoked by the fuzzer"}).json()
    return created


@revoke_schema.parametrize()
def test_revoking_keys_conforms(case: Case, fuzz_server: AshServer, throwaway_key: dict[str, Any]) -> None:
    """Fuzzed with a key of its own, which the fuzzer may revoke: then it gets 401s, which conform too."""
    case.call_and_validate(base_url=fuzz_server.url, headers=_auth(throwaway_key["key"]))


def test_revoking_a_key_conforms_and_spares_the_others(fuzz_server: AshServer) -> None:
    with fuzz_server.client() as client:
        doomed = client.post("/api/api-keys", json={"label": "revoked"}).json()
    operation = revoke_schema[REVOKE_KEY[1]][REVOKE_KEY[0]]
    case = operation.Case(path_parameters={"key_id": doomed["id"]})
    assert case.call_and_validate(base_url=fuzz_server.url, headers=_auth(doomed["key"])).status_code == 204
    again = operation.Case(path_parameters={"key_id": doomed["id"]})
    assert again.call_and_validate(base_url=fuzz_server.url, headers=_auth(doomed["key"])).status_code == 401
    assert httpx.get(fuzz_server.url + "/api/agents", headers=_auth(fuzz_server.api_key)).status_code == 200


def test_fuzzing_got_no_server_error(fuzz_server: AshServer, capsys: pytest.CaptureFixture[str]) -> None:
    """What the server itself counted (ash_http_requests_total) over the run: every request, by status."""
    metrics = httpx.get(fuzz_server.url + "/metrics", headers=_auth(fuzz_server.api_key)).text
    statuses: Counter[str] = Counter()
    for match in re.finditer(r"^ash_http_requests_total\{(.*?)\} (\S+)$", metrics, re.MULTILINE):
        status = re.search(r'status="(\d+)"', match.group(1))
        assert status is not None
        statuses[status.group(1)] += int(float(match.group(2)))
    total = sum(statuses.values())
    server_errors = {status: n for status, n in statuses.items() if status.startswith("5")}
    operations = sum(len(methods) for methods in OPENAPI["paths"].values())
    with capsys.disabled():
        print(f"\nfuzz: {operations} operations, {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert total > 20 * operations, statuses  # the run above ran (this module, in order)
    assert not server_errors, statuses
