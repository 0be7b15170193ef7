"""Start-up against PostgreSQL: two servers starting at once on one empty database migrate it once and both come
up; a database that is not up yet is waited for with backoff; one that stays away, or does not exist, stops the
server with a clear error that names it (without its password)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.postgres import PostgresCluster, Unavailable
from tests.support.server import REPO, AshServer, free_port

pytestmark = pytest.mark.slow

SHARED = {"ASH_API_KEY": "ash_shared-key-of-both-servers-0123", "ASH_SECRET_KEY": "shared-server-secret-0123456789"}


def applied_migrations(server: AshServer) -> list[str]:
    return re.findall(r"applied migration (\w+)", server.log())


def wait_for_log(server: AshServer, fragment: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while fragment not in server.log():
        assert server.process is not None and server.process.poll() is None, server.log()
        assert time.monotonic() < deadline, f"no {fragment!r} in the log:\n{server.log()}"
        time.sleep(0.05)


def exit_code(server: AshServer, timeout: float = 60) -> int:
    assert server.process is not None
    return server.process.wait(timeout=timeout)


@pytest.fixture
def two_servers(postgres: PostgresCluster, fake_model: FakeAnthropic) -> Iterator[tuple[AshServer, AshServer]]:
    url = postgres.database()
    servers = [AshServer(fake_model.url, database_url=url, env=SHARED) for _ in range(2)]
    try:
        for server in servers:  # both processes start before either is up
            server.launch()
        for server in servers:
            server.wait_healthy()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.cleanup()


def test_two_servers_starting_together_migrate_once(two_servers: tuple[AshServer, AshServer]) -> None:
    first, second = two_servers
    applied = applied_migrations(first) + applied_migrations(second)
    assert applied and sorted(applied) == sorted(set(applied))  # every revision applied exactly once
    assert not applied_migrations(first) or not applied_migrations(second)  # by one of them
    # One database: what one server stores, the other serves, with the key both registered.
    with first.client() as one, second.client() as two:
        deployed = one.post("/api/agents", json={"name": "shared", "path": str(REPO / "examples" / "hello-agent")})
        assert deployed.status_code == 201
        assert two.get("/api/agents/shared").json()["agent"]["id"] == deployed.json()["agent"]["id"]
        assert len(two.get("/api/api-keys").json()["apiKeys"]) == 1


def test_the_server_waits_for_a_database_that_is_not_up_yet(fake_model: FakeAnthropic) -> None:
    try:
        cluster = PostgresCluster.create()
    except Unavailable as exc:
        pytest.skip(str(exc))
    server = AshServer(fake_model.url, database_url=cluster.url("postgres"))
    server.env["ASH_DATABASE_STARTUP_TIMEOUT_MS"] = "120000"
    try:
        server.launch()
        wait_for_log(server, "is not reachable yet")
        cluster.start()
        server.wait_healthy()
        assert "is reachable (attempt" in server.log()
        with server.client() as client:
            assert client.get("/api/agents").status_code == 200
    finally:
        server.cleanup()
        cluster.stop()


def test_a_database_that_stays_away_stops_the_server_with_a_clear_error(fake_model: FakeAnthropic) -> None:
    port = free_port()
    url = f"postgresql://ash:hunter2-password@127.0.0.1:{port}/ash"
    server = AshServer(fake_model.url, database_url=url, env={"ASH_DATABASE_STARTUP_TIMEOUT_MS": "1500"})
    try:
        assert exit_code(server.launch()) != 0
        log = server.log()
        assert f"cannot connect to the database postgresql+asyncpg://ash:***@127.0.0.1:{port}/ash after" in log
        assert "after trying for 1.5 s" in log and "ASH_DATABASE_URL" in log
        assert "hunter2" not in log
    finally:
        server.cleanup()


def test_a_missing_database_fails_at_once(postgres: PostgresCluster, fake_model: FakeAnthropic) -> None:
    url = postgres.url("no_such_database")
    # A wait this long would outlast the test: the server must not wait for an error that retrying cannot fix.
    server = AshServer(fake_model.url, database_url=url, env={"ASH_DATABASE_STARTUP_TIMEOUT_MS": "600000"})
    try:
        assert exit_code(server.launch()) != 0
        errors = [json.loads(line)["message"] for line in server.log().splitlines() if '"level": "ERROR"' in line]
        assert any(m.startswith("cannot start: cannot connect to the database") for m in errors), errors
        assert any('database "no_such_database" does not exist' in m for m in errors), errors
    finally:
        server.cleanup()
