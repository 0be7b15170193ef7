"""ASH_PUBLIC_DOCS opens the API's description (and only it) to requests without a key."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer

pytestmark = pytest.mark.slow


def test_public_docs_open_the_description_and_nothing_else(fake_model: FakeAnthropic) -> None:
    with AshServer(fake_model.url, env={"ASH_PUBLIC_DOCS": "true"}) as server:
        for path in ("/openapi.json", "/docs/json", "/docs", "/redoc"):
            assert httpx.get(server.url + path).status_code == 200, path
        assert httpx.get(server.url + "/openapi.json").json()["info"]["title"] == "Ash"
        for path in ("/api/agents", "/api/sessions", "/metrics"):
            assert httpx.get(server.url + path).status_code == 401, path
