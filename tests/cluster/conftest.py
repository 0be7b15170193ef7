"""A deployment of several machines on one host: PostgreSQL, the snapshot store (moto S3) and the fake model on a
bridge, coordinators on the host, each runner in its own network namespace with its own address and data dir."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.netns import Network, Unavailable
from tests.support.postgres import PostgresCluster
from tests.support.postgres import Unavailable as PostgresUnavailable
from tests.support.server import AshServer, short_tempdir
from tests.support.sse import turn_text
from tests.support.storage import S3Server

RUNNER_PORT = 4200
HEARTBEAT_MS = 300
LIVENESS_MS = 2500


class Deployment:
    def __init__(self, net: Network, pg: PostgresCluster, s3: S3Server, model: FakeAnthropic) -> None:
        self.net = net
        self.pg = pg
        self.model = model
        self.secret = secrets.token_hex(32)
        self.api_key = "ash_cluster_" + secrets.token_hex(16)
        self.database_url = pg.database()
        bucket = s3.bucket("ash-cluster-" + secrets.token_hex(4))
        self.env = {
            **s3.env,
            "ASH_SNAPSHOT_URL": f"s3://{bucket}/snapshots",
            "ASH_INTERNAL_SECRET": self.secret,
            "ASH_API_KEY": self.api_key,
            "ASH_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS),
            "ASH_RUNNER_LIVENESS_TIMEOUT_MS": str(LIVENESS_MS),
        }
        self.machines: dict[str, tuple[str, str]] = {}
        self.servers: list[AshServer] = []
        self.folder = short_tempdir()

    def coordinator(self, env: dict[str, str] | None = None, database_url: str | None = None) -> AshServer:
        server = AshServer(
            self.model.url,
            host=self.net.host,
            database_url=database_url or self.database_url,
            env={**self.env, "ASH_MODE": "coordinator", **(env or {})},
        )
        self.servers.append(server)
        return server

    def runner(
        self, name: str, coordinator: AshServer, env: dict[str, str] | None = None, database_url: str | None = None
    ) -> AshServer:
        """A runner on its own machine (namespace); the same name is the same machine (and data dir) again."""
        if name not in self.machines:
            self.machines[name] = self.net.machine(name)
        ns, address = self.machines[name]
        server = AshServer(
            self.model.url,
            data_dir=self.folder / name / "data",
            host=address,
            port=RUNNER_PORT,
            argv_prefix=self.net.exec_prefix(ns),
            database_url=database_url or self.database_url,
            env={
                **self.env,
                "ASH_MODE": "runner",
                "ASH_RUNNER_ID": name,
                "ASH_SERVER_URL": coordinator.url,
                "ASH_RUNNER_ADVERTISE_HOST": address,
                "ASH_RUNNER_PORT": str(RUNNER_PORT),
                **(env or {}),
            },
        )
        self.servers.append(server)
        return server

    def address(self, name: str) -> str:
        return self.machines[name][1]

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()


def runners_of(coordinator: AshServer) -> dict[str, dict[str, Any]]:
    with coordinator.client() as client:
        response = client.get("/api/internal/runners")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["runners"]) and body["hasLocal"] is False  # the reference's fields
    for runner in body["runners"]:
        url = httpx.URL(runner["url"])
        assert (runner["runnerId"], runner["host"], runner["port"]) == (runner["id"], url.host, url.port)
        assert (runner["active"], runner["max"]) == (runner["load"], runner["maxSandboxes"])
    return {r["id"]: r for r in body["runners"]}


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    try:
        net = Network()
    except Unavailable as exc:
        pytest.skip(f"multi-machine tests need network namespaces: {exc}")
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def deployment(network: Network) -> Iterator[Deployment]:
    """Services on the bridge address, reachable from every namespace."""
    try:
        pg = PostgresCluster.create(host=network.host, clients=network.cidr).start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is needed (scripts/install.sh --dev installs it): {exc}")
    s3 = S3Server(host=network.host).start()
    model = FakeAnthropic(host=network.host).start()
    deployment = Deployment(network, pg, s3, model)
    try:
        yield deployment
    finally:
        deployment.cleanup()
        model.stop()
        s3.stop()
        pg.stop()


def stream(client: httpx.Client, session_id: str, content: str) -> str:
    return turn_text(client, session_id, content, until_done=False)
