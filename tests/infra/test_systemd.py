"""systemd/: both units verify cleanly (stderr empty) against a staged root, and their hardening scores are what the
units' headers and docs/self-hosting/bare-metal.md record (systemd-analyze security --offline=true)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ["ash.service", "ash-runner.service"]

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (systemd)")


@pytest.fixture(scope="module")
def staged_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root with the host's unit files, the two units and an executable at their ExecStart path: verify checks
    that the command exists, and /opt/ash is not installed on the machine that runs the tests."""
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy2(REPO / "systemd" / unit, root / "etc/systemd/system" / unit)
    ash = root / "opt/ash/venv/bin/ash"
    ash.parent.mkdir(parents=True)
    ash.write_text("#!/bin/sh\n")
    ash.chmod(0o755)
    yield root


@pytest.mark.parametrize("unit", UNITS)
def test_units_verify_without_a_warning(staged_root: Path, unit: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={staged_root}", "--man=no", unit], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_verify_catches_a_missing_command_and_an_unknown_key(staged_root: Path) -> None:
    broken = staged_root / "etc/systemd/system/ash-broken.service"
    text = (REPO / "systemd/ash.service").read_text().replace("/opt/ash/venv/bin/ash", "/opt/ash/venv/bin/missing")
    broken.write_text(text + "\nProtectEverything=yes\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={staged_root}", "--man=no", broken.name], capture_output=True, text=True
    )
    assert "is not executable" in result.stderr and "Unknown key" in result.stderr


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=40", str(unit)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr  # --threshold=40: fails above 4.0
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


@pytest.mark.parametrize("unit", UNITS)
def test_exposure_score_is_the_recorded_one(unit: str) -> None:
    path = REPO / "systemd" / unit
    recorded = re.search(r"= (\d+\.\d) OK", path.read_text())
    assert recorded, "the unit's header records its score"
    assert exposure(path) == float(recorded.group(1))
    docs = (REPO / "docs/self-hosting/bare-metal.md").read_text()
    assert f"| `{unit}` | {recorded.group(1)} " in docs


def service_section(unit: str) -> list[str]:
    text = (REPO / "systemd" / unit).read_text()
    body = text.split("[Service]")[1].split("[Install]")[0]
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def test_both_units_share_the_same_hardening() -> None:
    server, runner = service_section("ash.service"), service_section("ash-runner.service")
    assert [line for line in server if not line.startswith("ExecStart=")] == [
        line for line in runner if not line.startswith("ExecStart=")
    ]
    for required in (
        "EnvironmentFile=/etc/ash/ash.env",
        "Restart=always",
        "Delegate=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        # A dedicated non-root user holding the measured six (docs/decisions/0008-non-root-server.md).
        "User=ash",
        "Group=ash",
        "CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL",
        "AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL",
        "RemoveIPC=yes",
    ):
        assert required in server
    assert "ExecStart=/opt/ash/venv/bin/ash serve" in server
    assert "ExecStart=/opt/ash/venv/bin/ash runner" in runner


def test_the_unit_is_what_the_installers_install() -> None:
    """Ansible copies systemd/ash.service; the cloud boot script installs it from the release archive."""
    role = (REPO / "ansible/roles/ash_server/tasks/main.yml").read_text()
    assert 'src: "{{ ash_source_dir }}/systemd/ash.service"' in role
    boot = (REPO / "infra/boot/install-ash.sh").read_text()
    assert 'install -m 0644 "$src/systemd/ash.service" /etc/systemd/system/ash.service' in boot
    # The docker image's entrypoint starts the server as its `ash` user with the same six capabilities.
    entrypoint = (REPO / "docker/docker-entrypoint.sh").read_text()
    assert 'server_caps="-all,+chown,+dac_override,+fowner,+kill,+setgid,+setuid"' in entrypoint
    assert '--ambient-caps=$server_caps"' in entrypoint and 'server_uid="${ASH_SERVER_UID:-10000}"' in entrypoint
    # Both create the server's user and give it the data dir before systemd first starts the unit.
    assert "install -d -m 0711 -o ash -g ash /var/lib/ash" in boot
    ash_role = (REPO / "ansible/roles/ash/tasks/main.yml").read_text()
    assert (
        'owner: "{{ ash_uid }}"' in ash_role
        and "ash_user: ash" in (REPO / "ansible/roles/ash/defaults/main.yml").read_text()
    )
