from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.postgres import PostgresCluster, Unavailable
from tests.support.server import AshServer
from tests.support.storage import GcsServer, S3Server


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def model(fake_model: FakeAnthropic) -> FakeAnthropic:
    """The shared fake Messages API, with no rules and an empty request log."""
    fake_model.reset()
    return fake_model


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One real PostgreSQL for the whole run (started on first use); `postgres.database()` gives a fresh one."""
    try:
        cluster = PostgresCluster.start_new()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def ash_server(request: pytest.FixtureRequest, fake_model: FakeAnthropic) -> Iterator[AshServer]:
    """One real Ash server per test module, on SQLite unless the module parametrizes it:
    `pytest.mark.parametrize("ash_server", ["sqlite", "postgresql"], indirect=True, scope="module")`."""
    engine = getattr(request, "param", "sqlite")
    database_url = request.getfixturevalue("postgres").database() if engine == "postgresql" else None
    server = AshServer(fake_model.url, database_url=database_url).start()
    try:
        yield server
    finally:
        server.cleanup()


# S3 (moto in server mode) and GCS (gcp-storage-emulator) over real HTTP, one of each for the whole run.
@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    server = GcsServer().start()
    try:
        yield server
    finally:
        server.stop()
