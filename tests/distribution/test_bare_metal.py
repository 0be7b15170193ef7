"""Bare metal, for real: `ansible-playbook site.yml` with the shipped example inventory against a Debian 12 host
booted with systemd, then what an operator does next — a deploy, turns through the fake model, a second run that
changes nothing, a reboot that brings everything back."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distribution import ansible_run
from tests.distribution.ash_client import Deployed
from tests.distribution.podman import Host, Network
from tests.fakes.anthropic_api import FakeAnthropic

# The example inventory's host: the container carries its name, so the inventory is used as shipped.
HOST = "ash-1.example.internal"
SECRETS = {
    "ash_server_api_key": "ash_baremetal_0123456789abcdef01234567",
    "ash_server_anthropic_api_key": "sk-ant-distribution-test",
    "ash_server_credential_key": "credential-key-0123456789abcdef0123",
    "ash_postgresql_password": "0123456789abcdef0123456789abcdef",
}


def extra_vars(model: FakeAnthropic) -> dict[str, Any]:
    """What the operator supplies beyond the example: the vault's secrets and where the model is."""
    settings = ansible_run.example_settings()["ash_server_settings"]
    return {
        **SECRETS,
        "ash_server_settings": {**settings, "ANTHROPIC_BASE_URL": model.url},
    }


class BareMetal:
    def __init__(self, host: Host, model: FakeAnthropic, work: Path) -> None:
        self.host = host
        self.model = model
        self.work = work
        self.server = Deployed(f"http://{host.address}:4100", SECRETS["ash_server_api_key"], work / "home")
        self.server.home.mkdir(parents=True, exist_ok=True)

    def run_playbook(self) -> str:
        work = self.work / "ansible"
        work.mkdir(parents=True, exist_ok=True)
        inventories = [ansible_run.EXAMPLE_INVENTORY, ansible_run.podman_connection([HOST], work)]
        return ansible_run.playbook(inventories, extra_vars(self.model), work)

    def diagnose(self) -> str:
        status = self.host.sh("systemctl status ash --no-pager || true", check=False).stdout
        return self.host.journal("ash", lines=30) + status


@pytest.fixture(scope="module")
def bare_metal(debian_image: str, network: Network, model: FakeAnthropic) -> Iterator[BareMetal]:
    work = Path(tempfile.mkdtemp(prefix="ash-dist-bare-"))
    host = Host.boot(HOST, network, debian_image)
    try:
        yield BareMetal(host, model, work)
    finally:
        host.remove()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def first_run(bare_metal: BareMetal) -> str:
    return bare_metal.run_playbook()


def test_site_yml_installs_a_server_that_serves(bare_metal: BareMetal, first_run: str) -> None:
    counts = ansible_run.recap(first_run)[HOST]
    assert counts["failed"] == 0 and counts["unreachable"] == 0, first_run[-4000:]
    host = bare_metal.host
    assert host.unit_state("postgresql") == "active"
    health = host.sh(
        'for i in $(seq 60); do python3 -c "import urllib.request as u; print(u.urlopen('
        "'http://127.0.0.1:4100/health', timeout=3).read().decode())\" && exit 0; sleep 1; done; exit 1",
        check=False,
    )
    assert health.returncode == 0, bare_metal.diagnose()
    assert host.unit_state("ash") == "active", bare_metal.diagnose()
    assert '"status"' in health.stdout
    # The server runs as the unprivileged `ash` user, its settings file readable by root only.
    owner = host.sh("ps -o user= -C ash | sort -u; stat -c '%U %a' /etc/ash/ash.env").stdout.split()
    assert owner == ["ash", "root", "600"], owner


def test_a_deployed_agent_streams_a_turn_and_the_data_is_in_postgresql(bare_metal: BareMetal, first_run: str) -> None:
    server = bare_metal.server
    server.wait_healthy()
    server.deploy_hello()
    session_id = server.new_session()
    reply = server.send(session_id, "hello from bare metal")
    assert "hello from bare metal" in reply, reply
    server.check_bridge_bytecode(session_id)  # the Ansible role's install
    # Its bridge was forked from the template (the non-root unit, ProtectProc=invisible): no fallback to exec.
    assert server.health()["bridgeStart"] == "fork"
    rows = bare_metal.host.sh(
        f"runuser -u postgres -- psql -At -d ash -c \"SELECT count(*) FROM sessions WHERE id::text = '{session_id}'\""
    ).stdout.strip()
    assert rows == "1", rows
    assert not bare_metal.host.sh("ls /var/lib/ash/*.db 2>/dev/null || true").stdout.strip()  # no SQLite beside it


def test_a_second_run_changes_nothing(bare_metal: BareMetal, first_run: str) -> None:
    second = bare_metal.run_playbook()
    counts = ansible_run.recap(second)[HOST]
    assert counts["changed"] == 0 and counts["failed"] == 0, ansible_run.changed_tasks(second)


def test_a_reboot_brings_everything_back(bare_metal: BareMetal, first_run: str) -> None:
    server = bare_metal.server
    server.wait_healthy()
    session_id = server.new_session()
    assert "before the reboot" in server.send(session_id, "before the reboot")
    bare_metal.host.reboot()
    server.wait_healthy()
    assert bare_metal.host.unit_state("ash") == "active", bare_metal.diagnose()
    assert bare_metal.host.unit_state("postgresql") == "active"
    listed = server.get("/api/sessions")
    assert isinstance(listed, dict)
    assert session_id in {s["id"] for s in listed["sessions"]}
    server.ash("session", "resume", session_id)
    reply = server.send(session_id, "after the reboot")
    # The model is asked with the whole conversation: the session kept its memory across the reboot.
    assert "after the reboot" in reply and "before the reboot" in reply, reply
