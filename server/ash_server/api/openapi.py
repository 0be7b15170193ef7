"""The OpenAPI document as the server answers it: every operation lists the errors it can answer, each with the
`{error, statusCode}` body api/errors.py renders, and the operations that need a key say so.

An operation's errors are
- 400 when it takes parameters or a body: a validation error is a 400 here, never FastAPI's 422;
- 413 when it takes a body (api/middleware/limits.py refuses one over ASH_MAX_REQUEST_BYTES);
- 507 when it writes (every method but GET): the disk of the data dir or the database is full (api/errors.py);
- what its handler raises, in RAISES: its dependencies (authentication: 401, and 429 once a client IP has failed it
  too often) and the domain code it calls. tests/server/test_openapi.py reads the handlers and fails when a row
  and its handler disagree; tests/api/test_fuzz.py fails on any status the running server answers undocumented.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ..store.models import BIGINT_MAX
from .schemas import ErrorResponse

__all__ = ["RAISES", "STATUSES", "describe_errors", "install_openapi"]

# Each error status once, as a response of components (its name there, what it means whichever route answers it);
# docs/api.md has the situations route by route.
STATUSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Invalid input (a malformed body, parameter or path), or a request the state refuses."),
    401: ("Unauthorized", "Missing, malformed, wrong, revoked or expired API key."),
    403: ("Forbidden", "Authenticated, but an operator's setting does not let this tenant do this on this server."),
    404: ("NotFound", "No such resource (or another tenant's)."),
    409: ("Conflict", "In conflict with the resource's state: a turn running, a session another server runs, ..."),
    410: ("Gone", "The session has ended."),
    413: ("PayloadTooLarge", "Too large: the request body, a message, an upload or a file over its limit."),
    415: ("UnsupportedMediaType", "An attachment of a media type the server does not take."),
    429: ("TooManyRequests", "Over a rate limit; Retry-After says in how many seconds to try again."),
    502: ("BadGateway", "The session's bridge broke the protocol or went away; the session stays resumable."),
    503: ("ServiceUnavailable", "No sandbox capacity, a sandbox or snapshot that failed, or a feature not configured."),
    507: ("InsufficientStorage", "The server's disk is full: nothing of the request was stored; retry once freed."),
}
# 429, and 503 when sandbox starts are queued (StartsBusy).
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
SECURITY_SCHEME = "apiKey"

# What each operation's handler raises (the 400, 413 and 507 above come on top).
RAISES: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/health"): (),
    ("GET", "/api/model/check"): (401, 429),
    ("POST", "/api/agents"): (400, 401, 403, 404, 409, 429),
    ("GET", "/api/agents"): (401, 429),
    ("GET", "/api/agents/{name}"): (401, 404, 429),
    ("PATCH", "/api/agents/{name}"): (400, 401, 404, 429),
    ("DELETE", "/api/agents/{name}"): (401, 404, 429),
    ("GET", "/api/agents/{name}/config"): (401, 404, 429),
    ("PATCH", "/api/agents/{name}/config"): (400, 401, 404, 429),
    ("GET", "/api/agents/{name}/files"): (401, 404, 429),
    ("POST", "/api/agents/{name}/files"): (400, 401, 404, 409, 429),
    ("DELETE", "/api/agents/{name}/files/{file_path}"): (400, 401, 404, 409, 429),
    ("GET", "/api/agents/{name}/files/{file_path}"): (400, 401, 404, 409, 429),
    ("GET", "/api/agents/{name}/versions"): (401, 404, 429),
    ("POST", "/api/agents/{name}/versions"): (400, 401, 404, 409, 429),
    ("GET", "/api/agents/{name}/versions/{version}"): (401, 404, 429),
    ("PATCH", "/api/agents/{name}/versions/{version}"): (401, 404, 409, 429),
    ("DELETE", "/api/agents/{name}/versions/{version}"): (401, 404, 409, 429),
    ("POST", "/api/agents/{name}/versions/{version}/activate"): (401, 404, 409, 429),
    ("POST", "/api/credentials"): (400, 401, 429, 503),
    ("GET", "/api/credentials"): (401, 429),
    ("GET", "/api/credentials/{credential_id}"): (401, 404, 429),
    ("DELETE", "/api/credentials/{credential_id}"): (401, 404, 429),
    ("POST", "/api/api-keys"): (400, 401, 409, 429),
    ("GET", "/api/api-keys"): (401, 429),
    ("GET", "/api/api-keys/{key_id}"): (401, 404, 429),
    ("DELETE", "/api/api-keys/{key_id}"): (401, 404, 409, 429),
    ("GET", "/api/usage"): (401, 429),
    ("GET", "/api/usage/stats"): (401, 429),
    ("POST", "/api/agents/{name}/eval-cases/import"): (401, 404, 429),
    ("GET", "/api/agents/{name}/eval-cases/export"): (401, 404, 429),
    ("GET", "/api/agents/{name}/eval-cases"): (401, 404, 429),
    ("POST", "/api/agents/{name}/eval-cases"): (401, 404, 429),
    ("GET", "/api/agents/{name}/eval-cases/{case_id}"): (401, 404, 429),
    ("PATCH", "/api/agents/{name}/eval-cases/{case_id}"): (400, 401, 404, 429),
    ("DELETE", "/api/agents/{name}/eval-cases/{case_id}"): (401, 404, 429),
    ("GET", "/api/analytics"): (401, 429),
    ("GET", "/api/agents/{name}/eval-runs/compare"): (401, 404, 429),
    ("POST", "/api/agents/{name}/eval-runs"): (401, 404, 429, 503),
    ("GET", "/api/agents/{name}/eval-runs"): (401, 404, 429),
    ("GET", "/api/agents/{name}/eval-runs/{run_id}"): (401, 404, 429),
    ("GET", "/api/agents/{name}/eval-runs/{run_id}/results"): (401, 404, 429),
    ("POST", "/api/agents/{name}/eval-runs/{run_id}/score"): (400, 401, 404, 429),
    ("PATCH", "/api/agents/{name}/eval-results/{result_id}"): (400, 401, 404, 429),
    ("POST", "/api/sessions"): (400, 401, 403, 404, 429, 502, 503),
    ("GET", "/api/sessions"): (401, 429),
    ("GET", "/api/sessions/{session_id}"): (401, 404, 409, 429),
    ("PATCH", "/api/sessions/{session_id}/config"): (400, 401, 404, 409, 410, 429),
    ("POST", "/api/sessions/{session_id}/messages"): (400, 401, 403, 404, 409, 410, 413, 429, 502, 503),
    ("GET", "/api/sessions/{session_id}/stream"): (401, 404, 409, 429),
    ("POST", "/api/sessions/{session_id}/interrupt"): (401, 404, 409, 429, 502),
    ("GET", "/api/sessions/{session_id}/messages"): (401, 404, 409, 429),
    ("GET", "/api/sessions/{session_id}/events"): (401, 404, 409, 429),
    ("GET", "/api/sessions/{session_id}/logs"): (401, 404, 409, 429),
    ("POST", "/api/sessions/{session_id}/pause"): (401, 404, 409, 410, 429, 502),
    ("POST", "/api/sessions/{session_id}/resume"): (400, 401, 403, 404, 409, 410, 429, 502, 503),
    ("POST", "/api/sessions/{session_id}/stop"): (401, 404, 409, 410, 429, 502),
    ("POST", "/api/sessions/{session_id}/fork"): (401, 404, 409, 410, 429, 502, 503),
    ("DELETE", "/api/sessions/{session_id}"): (401, 404, 409, 410, 429, 502),
    ("GET", "/api/sessions/{session_id}/files"): (401, 404, 409, 410, 429, 503),
    ("GET", "/api/sessions/{session_id}/files/{file_path}"): (401, 404, 409, 410, 429, 503),
    ("POST", "/api/sessions/{session_id}/files"): (400, 401, 404, 409, 410, 413, 429, 502, 503),
    ("DELETE", "/api/sessions/{session_id}/files/{file_path}"): (400, 401, 404, 409, 410, 429, 502, 503),
    ("GET", "/api/sessions/{session_id}/workspace"): (401, 404, 409, 410, 429, 503),
    ("POST", "/api/sessions/{session_id}/workspace"): (400, 401, 404, 409, 410, 413, 429, 502, 503),
    ("POST", "/api/sessions/{session_id}/exec"): (400, 401, 404, 409, 429),
    ("POST", "/api/sessions/{session_id}/attachments"): (400, 401, 404, 409, 413, 415, 429),
    ("GET", "/api/sessions/{session_id}/attachments"): (401, 404, 409, 429),
    ("GET", "/api/attachments/{attachment_id}"): (401, 404, 429),
    ("DELETE", "/api/attachments/{attachment_id}"): (401, 404, 429),
    ("POST", "/api/queue"): (400, 401, 404, 409, 429),
    ("GET", "/api/queue"): (401, 429),
    ("GET", "/api/queue/stats"): (401, 429),
    ("GET", "/api/queue/{item_id}"): (401, 404, 429),
    ("DELETE", "/api/queue/{item_id}"): (400, 401, 404, 429),
    ("GET", "/api/internal/runners"): (401, 404, 429),
    ("GET", "/metrics"): (401, 403, 429),
}


def describe_errors(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document with the errors each operation answers in place of its 422 (idempotent)."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(by_alias=True)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    components["responses"] = {
        name: {"description": meaning, "content": error, **({"headers": RETRY_AFTER} if status in (429, 503) else {})}
        for status, (name, meaning) in STATUSES.items()
    }
    components["securitySchemes"] = {
        SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "description": "An Ash API key: `Bearer ash_...`."}
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = set(RAISES.get((method.upper(), path), ()))
            if operation.get("parameters") or "requestBody" in operation:
                statuses.add(400)
            if "requestBody" in operation:
                statuses.add(413)
            if method.upper() != "GET":
                statuses.add(507)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(statuses):
                responses[str(status)] = {"$ref": f"#/components/responses/{STATUSES[status][0]}"}
            if 401 in statuses:
                operation["security"] = [{SECURITY_SCHEME: []}]
            for parameter in operation.get("parameters", []):
                _not_null(parameter.get("schema", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _integer_bounds(document)
    return document


def _not_null(schema: dict[str, Any]) -> None:
    """An optional parameter is one left out, never `null`: on the wire it is a string (`?after=null` is a 400)."""
    variants = schema.get("anyOf")
    if isinstance(variants, list):
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) == 1:
            del schema["anyOf"]
            schema.update(rest[0])
        else:
            schema["anyOf"] = rest


def _integer_bounds(node: Any) -> None:
    """Integer bounds as integers: FastAPI's OpenAPI models carry them as floats, and 2^63 - 1 (BIGINT_MAX, what
    the database stores) does not survive one (it becomes 2^63, a value the server refuses)."""
    if isinstance(node, dict):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            value = node.get(key)
            if isinstance(value, float) and value.is_integer() and node.get("type") == "integer":
                node[key] = BIGINT_MAX if value == float(BIGINT_MAX) else int(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()`, which /openapi.json serves and scripts/openapi.py writes, with the errors described."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return describe_errors(generate())  # FastAPI's own is cached until the routes change

    app.openapi = openapi  # type: ignore[method-assign]
