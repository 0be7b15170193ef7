"""Mutual TLS between a coordinator and a runner in its own namespace: the deployment works through it, and a
machine without a certificate from the deployment's CA cannot even finish a handshake, in either direction."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster.conftest import RUNNER_PORT, Deployment, runners_of, stream
from tests.cluster.test_multi_machine import AGENT, _signed
from tests.fakes.anthropic_api import text
from tests.support.certs import CertificateAuthority
from tests.support.server import AshServer, free_port, short_tempdir
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def client_context(ca: CertificateAuthority, cert: tuple[object, object] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.ca_path))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


@pytest.fixture(scope="module")
def tls_deployment(deployment: Deployment) -> Iterator[tuple[AshServer, str, int, CertificateAuthority, tuple]]:
    folder = short_tempdir()
    ca = CertificateAuthority(folder / "ca")
    rogue = CertificateAuthority(folder / "rogue", "rogue-ca")
    ns, address = deployment.net.machine("gamma")
    deployment.machines["gamma"] = (ns, address)
    coordinator_cert = ca.issue("coordinator", [deployment.net.host])
    runner_cert = ca.issue("gamma", [address])
    intruder = rogue.issue("intruder", [deployment.net.host])
    internal_port = free_port()
    database = deployment.pg.database()

    def tls(cert: tuple[object, object]) -> dict[str, str]:
        return {"ASH_TLS_CERT": str(cert[0]), "ASH_TLS_KEY": str(cert[1]), "ASH_TLS_CA": str(ca.ca_path)}

    coordinator = deployment.coordinator(
        env={**tls(coordinator_cert), "ASH_INTERNAL_PORT": str(internal_port)}, database_url=database
    ).start()
    runner = deployment.runner(
        "gamma",
        coordinator,
        env={**tls(runner_cert), "ASH_SERVER_URL": f"https://{deployment.net.host}:{internal_port}"},
        database_url=database,
    ).launch()
    wait_for(lambda: runners_of(coordinator).get("gamma", {}).get("status") == "live", "gamma registered", 60)
    assert runner.process is not None and runner.process.poll() is None
    yield coordinator, address, internal_port, ca, (intruder, coordinator_cert)


def test_sessions_run_through_mutual_tls(
    tls_deployment: tuple[AshServer, str, int, CertificateAuthority, tuple], deployment: Deployment
) -> None:
    coordinator, _, _, _, _ = tls_deployment
    deployment.model.on("over tls", text("sealed reply"))
    with coordinator.client() as client:
        assert client.post("/api/agents", json={"name": "sealed", "path": AGENT}).status_code == 201
        session = client.post("/api/sessions", json={"agent": "sealed"}).json()["session"]
        assert session["runnerId"] == "gamma"
        assert "sealed reply" in stream(client, session["id"], "over tls")


def test_machines_without_the_deployment_certificate_are_refused(
    tls_deployment: tuple[AshServer, str, int, CertificateAuthority, tuple], deployment: Deployment
) -> None:
    coordinator, address, internal_port, ca, (intruder, coordinator_cert) = tls_deployment
    runner_health = f"https://{address}:{RUNNER_PORT}/health"
    internal = f"https://{deployment.net.host}:{internal_port}/api/internal/cluster/heartbeat"
    for url in (runner_health, internal):
        for cert in (None, intruder):
            with pytest.raises(httpx.HTTPError):  # the handshake fails: no certificate, or one from another CA
                httpx.get(url, verify=client_context(ca, cert), timeout=5)
    # With the deployment's certificate the TLS layer lets a call through, and the signature is still required.
    sessions = f"https://{address}:{RUNNER_PORT}/api/sessions"
    with httpx.Client(verify=client_context(ca, coordinator_cert), timeout=10) as client:
        assert client.get(runner_health).status_code == 200
        assert client.post(sessions, json={"agent": "sealed"}).status_code == 401
        beat = json.dumps({"id": "gamma", "sandboxes": 0, "received": 0, "stats": {}}).encode()
        headers = {"content-type": "application/json", **_signed(deployment.secret, "POST", internal, beat)}
        assert client.post(internal, content=beat, headers=headers).status_code == 200
    # Runner traffic is served on the internal listener only: the public port refuses even a signed call.
    public = coordinator.url + "/api/internal/cluster/heartbeat"
    headers = {"content-type": "application/json", **_signed(deployment.secret, "POST", public, beat)}
    assert httpx.post(public, content=beat, headers=headers).status_code == 404
