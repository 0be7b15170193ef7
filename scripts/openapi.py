"""Write docs/openapi.json from the real routes (tests/server/test_openapi.py fails when it is stale)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ash_server.app import create_app
from ash_server.settings import Settings

OUT = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT}\n")
