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
