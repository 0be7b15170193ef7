from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_openapi_spec_is_current() -> None:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "openapi.json").read_text()
    assert module.render() == current, "docs/openapi.json is stale: run `python scripts/openapi.py`"


def test_spec_has_the_contract_paths() -> None:
    import json

    paths = json.loads((ROOT / "docs" / "openapi.json").read_text())["paths"]
    for path in [
        "/health",
        "/api/agents",
        "/api/agents/{name}",
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/messages",
        "/api/sessions/{session_id}/events",
        "/api/sessions/{session_id}/pause",
        "/api/sessions/{session_id}/resume",
        "/api/sessions/{session_id}/stop",
    ]:
        assert path in paths, path


def test_documented_errors_are_what_the_handlers_raise() -> None:
    """Every operation documents the statuses its handler (with its dependencies and the domain code it calls)
    raises, plus 400 for its inputs, 413 for its body and 507 when it writes; no 422, which the server never sends."""
    from fastapi.routing import APIRoute, iter_route_contexts

    from ash_server.api.openapi import RAISES
    from ash_server.app import create_app
    from ash_server.settings import Settings
    from tests.support.raises import Analysis

    app = create_app(Settings())
    analysis = Analysis()
    raised: dict[tuple[str, str], set[int]] = {}
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            statuses = {error.status_code for error in analysis.dependant(route.original_route.dependant)}
            for method in route.methods:
                raised[(method, route.path_format)] = statuses
    assert set(RAISES) == set(raised), "api/openapi.py RAISES must have a row for every operation, and only those"
    drift = {
        op: {"documented": sorted(RAISES[op]), "raised": sorted(s)} for op, s in raised.items() if set(RAISES[op]) != s
    }
    assert not drift, f"api/openapi.py RAISES and the handlers disagree: {drift}"

    document = app.openapi()
    for (method, path), statuses in RAISES.items():
        operation = document["paths"][path][method.lower()]
        errors = {int(status) for status in operation["responses"] if int(status) >= 400}
        expected = set(statuses)
        if operation.get("parameters") or "requestBody" in operation:
            expected.add(400)  # validation
        if "requestBody" in operation:
            expected.add(413)  # api/middleware/limits.py
        if method != "GET":
            expected.add(507)  # a full disk (api/errors.py), wherever the write fails
        assert errors == expected, (method, path)
        assert ("security" in operation) == (401 in statuses), (method, path)
