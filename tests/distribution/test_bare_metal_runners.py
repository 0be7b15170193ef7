"""Multi-machine bare metal, for real: site.yml installs a coordinator (the ash_server role, ASH_MODE=coordinator) and
two runners (the ash_runner role, with gVisor sandboxes: ash_sandbox_runtime gvisor) on three systemd Debian 12
hosts, sharing a PostgreSQL and an S3 bucket (moto) on the network's gateway, as a managed database and bucket would
be. A session lives on one runner; when that machine dies the next message runs it on the other, its conversation
restored from the bucket; the dead machine boots again and its runner rejoins."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distribution import ansible_run
from tests.distribution.ash_client import Deployed
from tests.distribution.podman import Host, Network, podman
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.postgres import PostgresCluster
from tests.support.storage import S3Server

COORDINATOR = "coordinator.example.internal"
RUNNERS = ["runner-1.example.internal", "runner-2.example.internal"]
API_KEY = "ash_cluster_0123456789abcdef0123456789"
HEARTBEAT = {"ASH_HEARTBEAT_INTERVAL_MS": "500", "ASH_RUNNER_LIVENESS_TIMEOUT_MS": "4000"}


class Cluster:
    def __init__(
        self, hosts: dict[str, Host], pg: PostgresCluster, s3: S3Server, model: FakeAnthropic, work: Path
    ) -> None:
        self.hosts = hosts
        self.work = work
        self.model = model
        self.database_url = pg.database()
        self.bucket = s3.bucket("ash-dist-" + secrets.token_hex(4))
        self.s3_env = s3.env
        self.secret = secrets.token_hex(32)
        coordinator = hosts[COORDINATOR].address
        self.server = Deployed(f"http://{coordinator}:4100", API_KEY, work / "home")
        self.server.home.mkdir(parents=True, exist_ok=True)

    def inventory(self) -> Path:
        """An inventory as docs/self-hosting/multi-machine.md and the example's comment describe it."""
        coordinator = self.hosts[COORDINATOR].address
        settings = {**self.s3_env, **HEARTBEAT, "ANTHROPIC_BASE_URL": self.model.url}
        inventory = {
            "all": {
                "vars": {
                    "ash_server_api_key": API_KEY,
                    "ash_server_anthropic_api_key": "sk-ant-cluster-test",
                    "ash_internal_secret": self.secret,
                    "ash_server_database_url": self.database_url,
                },
                "children": {
                    "ash_postgresql": {"hosts": {}},
                    "ash_servers": {
                        "hosts": {COORDINATOR: {}},
                        "vars": {
                            "ash_server_mode": "coordinator",
                            "ash_server_runner_addresses": [self.hosts[r].address for r in RUNNERS],
                            "ash_server_settings": settings,
                        },
                    },
                    "ash_runners": {
                        "hosts": {r: {"ash_runner_advertise_host": self.hosts[r].address} for r in RUNNERS},
                        "vars": {
                            "ash_runner_coordinator_url": f"http://{coordinator}:4100",
                            "ash_runner_coordinator_addresses": [coordinator],
                            "ash_runner_snapshot_url": f"s3://{self.bucket}/snapshots",
                            "ash_runner_settings": settings,
                            # The runners' sandboxes run under gVisor (the coordinator runs none).
                            "ash_sandbox_runtime": "gvisor",
                        },
                    },
                },
            }
        }
        path = self.work / "inventory.yml"
        path.write_text(json.dumps(inventory))
        path.chmod(0o600)
        return path

    def run_playbook(self) -> str:
        work = self.work / "ansible"
        work.mkdir(parents=True, exist_ok=True)
        connection = ansible_run.podman_connection([COORDINATOR, *RUNNERS], work)
        return ansible_run.playbook([self.inventory(), connection], {}, work)

    def runners(self) -> dict[str, dict[str, Any]]:
        listed = self.server.get("/api/internal/runners")
        assert isinstance(listed, dict)
        return {r["id"]: r for r in listed["runners"]}

    def wait_runner(self, name: str, status: str, limit_s: float = 120) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.runners().get(name, {}).get("status") == status:
                return
            time.sleep(0.5)

        def problems(host: Host, unit: str) -> str:
            """The journal's lines that are not INFO records, each cut short (tracebacks are long)."""
            lines = host.journal(unit, 400).splitlines()
            return "\n".join(line[:600] for line in lines if '"level": "INFO"' not in line)

        journals = {n: problems(self.hosts[n], "ash-runner")[-3000:] for n in RUNNERS}
        coordinator = problems(self.hosts[COORDINATOR], "ash")[-3000:]
        raise AssertionError(
            f"runner {name} not {status} within {limit_s} s: {self.runners()}\n{journals}\ncoordinator:\n{coordinator}"
        )


@pytest.fixture(scope="module")
def cluster(debian_image: str, network: Network, model: FakeAnthropic) -> Iterator[Cluster]:
    work = Path(tempfile.mkdtemp(prefix="ash-dist-cluster-"))
    pg = PostgresCluster.create(host=network.gateway, clients=f"10.{network.subnet}.0.0/24").start()
    s3 = S3Server(host=network.gateway).start()
    hosts: dict[str, Host] = {}
    try:
        for name in [COORDINATOR, *RUNNERS]:
            hosts[name] = Host.boot(name, network, debian_image)
        yield Cluster(hosts, pg, s3, model, work)
    finally:
        for host in hosts.values():
            host.remove()
        s3.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> str:
    return cluster.run_playbook()


def test_site_yml_installs_a_coordinator_and_two_runners(cluster: Cluster, installed: str) -> None:
    counts = ansible_run.recap(installed)
    for name in [COORDINATOR, *RUNNERS]:
        assert counts[name]["failed"] == 0 and counts[name]["unreachable"] == 0, installed[-4000:]
    cluster.server.wait_healthy()
    for runner in RUNNERS:
        host = cluster.hosts[runner]
        assert host.unit_state("ash-runner") == "active", host.journal("ash-runner", 30)
        cluster.wait_runner(runner, "live")
        # ash_sandbox_runtime gvisor: runsc is installed and the unit's drop-in runs the runner as root.
        assert host.sh("ps -o user= -C ash | sort -u").stdout.split() == ["root"]
        assert host.sh("runsc --version").returncode == 0


def test_a_session_moves_to_the_other_runner_when_its_machine_dies(cluster: Cluster, installed: str) -> None:
    server = cluster.server
    server.wait_healthy()
    server.deploy_hello()
    session_id = server.new_session()
    assert "remember the number 4242" in server.send(session_id, "remember the number 4242")
    server.check_runs_under_gvisor(session_id)
    session = server.get(f"/api/sessions/{session_id}")
    assert isinstance(session, dict)
    home = session["session"]["runnerId"]
    assert home in RUNNERS, session
    # A pause ends with the workspace's snapshot in the bucket (as every turn's end does, in the background).
    server.ash("session", "pause", session_id)
    server.ash("session", "resume", session_id)
    survivor = next(r for r in RUNNERS if r != home)
    podman("kill", home)  # the machine dies: no drain, no deregistration
    cluster.wait_runner(home, "dead", 60)
    reply = server.send(session_id, "what was the number")
    # The model was asked with the first turn too: the conversation came along to the other machine.
    assert "what was the number" in reply and "remember the number 4242" in reply, reply
    moved = server.get(f"/api/sessions/{session_id}")
    assert isinstance(moved, dict) and moved["session"]["runnerId"] == survivor, moved
    server.check_runs_under_gvisor(session_id)

    # The dead machine boots again: systemd starts its runner, which registers with the coordinator.
    podman("start", home)
    cluster.hosts[home].wait_booted()
    cluster.wait_runner(home, "live")


def test_a_second_run_changes_nothing_on_any_host(cluster: Cluster, installed: str) -> None:
    second = cluster.run_playbook()
    counts = ansible_run.recap(second)
    for name in [COORDINATOR, *RUNNERS]:
        assert counts[name]["changed"] == 0 and counts[name]["failed"] == 0, ansible_run.changed_tasks(second)
