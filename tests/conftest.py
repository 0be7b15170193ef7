from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def model(fake_model: FakeAnthropic) -> FakeAnthropic:
    """The shared fake Messages API, with no rules and an empty request log."""
    fake_model.reset()
    return fake_model


@pytest.fixture(scope="module")
def ash_server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    """One real Ash server per test module."""
    server = AshServer(fake_model.url).start()
    try:
        yield server
    finally:
        server.cleanup()
