"""ansible/: lint, syntax, and a real run of site.yml on this machine into a staged root, twice.

The run is real except for what a folder cannot have: apt, systemd and loading the firewall into the kernel
(`ash_manage_system` is false when `ash_root` is not "/"). PostgreSQL is a throwaway cluster this test starts, so the
ash_postgresql role really creates its role and database. The playbook reads its secrets from an Ansible Vault file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.ansible import ansible_env

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
VAULT_PASSWORD = "test-vault-password"
SECRETS = {
    "ash_server_api_key": "ash_staged-test-key-0123456789",
    "ash_server_anthropic_api_key": "sk-ant-staged-test",
    "ash_server_credential_key": "credential-key-0123456789abcdef",
    "ash_postgresql_password": "pg-password-0123456789abcdef",
    "ash_internal_secret": "internal-secret-0123456789abcdef0123456789",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postgres:
    port: int
    socket_dir: Path


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="ash-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data, sockets, port = root / "data", root / "sock", free_port()
    sockets.mkdir()
    shutil.chown(sockets, "postgres", "postgres")

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, cwd=root)

    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "--auth-local=peer", "--auth-host=scram-sha-256")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start")
    try:
        yield Postgres(port, sockets)
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Staged:
    stage: Path
    inventory: Path
    home: Path
    runs: list[subprocess.CompletedProcess[str]]

    def playbook(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(self.inventory / "hosts.yml"),
                "--vault-password-file",
                str(self.home / "vault-password"),
                "-e",
                "ansible_become=false",
                *extra,
                str(ANSIBLE / "site.yml"),
            ],
            env=ansible_env(self.home),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ANSIBLE,
        )


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*(ok=\d+.*)$", result.stdout, flags=re.MULTILINE)
    assert match, result.stdout[-3000:] + result.stderr[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def staged(postgres: Postgres) -> Iterator[Staged]:
    root = Path(tempfile.mkdtemp(prefix="ash-ansible-"))
    stage, inventory, home = root / "stage", root / "inventory", root / "home"
    (stage / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        shutil.copy2(Path("/etc") / name, stage / "etc" / name)
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (home / "tmp").mkdir(parents=True)
    (home / "vault-password").write_text(VAULT_PASSWORD + "\n")
    hosts = {
        "all": {
            "hosts": {"localhost": {"ansible_connection": "local"}},
            "vars": {"ansible_python_interpreter": sys.executable},
            "children": {
                "ash_servers": {"hosts": {"localhost": {}}},
                "ash_postgresql": {"hosts": {"localhost": {}}},
                "ash_runners": {"hosts": {}},
            },
        }
    }
    (inventory / "hosts.yml").write_text(json.dumps(hosts))
    settings = {
        "ash_root": str(stage),
        "ash_postgresql_socket_dir": str(postgres.socket_dir),
        "ash_postgresql_port": postgres.port,
        "ash_postgresql_psql": str(PG_BIN / "psql"),
        "ash_server_database_url": "postgresql://ash:{{ ash_postgresql_password | urlencode }}@127.0.0.1:"
        f"{postgres.port}/ash",
        "ash_server_settings": {"ASH_MAX_SANDBOXES": 50, "ASH_LOG_LEVEL": "info"},
        "ash_server_firewall_api_sources": ["10.0.0.0/16", "fd00::/8"],
    }
    (inventory / "group_vars" / "all" / "main.yml").write_text(json.dumps(settings))
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in SECRETS.items()))
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(home / "vault-password"), str(vault)],
        env=ansible_env(home),
        check=True,
        capture_output=True,
    )
    runs = Staged(stage, inventory, home, [])
    try:
        runs.runs.append(runs.playbook())
        runs.runs.append(runs.playbook())
        yield runs
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_site_yml_installs_into_the_staged_root_and_a_second_run_changes_nothing(staged: Staged) -> None:
    first, second = staged.runs
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap(first)["changed"] > 0
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    assert recap(second)["changed"] == 0, second.stdout[-4000:]
    assert staged.inventory.joinpath("group_vars/all/vault.yml").read_text().startswith("$ANSIBLE_VAULT;")
    for secret in SECRETS.values():
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr


def test_every_host_gets_the_ssh_jail_and_daily_security_upgrades(staged: Staged) -> None:
    # What ash_hardening writes (on a real host it also installs and starts fail2ban, and checks the jail answers:
    # tests/distribution's bare-metal host runs it).
    files = ANSIBLE / "roles/ash_hardening/files"
    written = {
        "etc/fail2ban/jail.d/ash.local": "jail.local",
        "etc/apt/apt.conf.d/20auto-upgrades": "20auto-upgrades",
        "etc/apt/apt.conf.d/52ash-unattended-upgrades": "52ash-unattended-upgrades",
    }
    for path, source in written.items():
        assert (staged.stage / path).read_text() == (files / source).read_text(), path
    jail = (staged.stage / "etc/fail2ban/jail.d/ash.local").read_text()
    assert "backend = systemd" in jail and "[sshd]\nenabled = true" in jail  # Debian 12 logs to the journal only
    upgrades = (staged.stage / "etc/apt/apt.conf.d/52ash-unattended-upgrades").read_text()
    assert "label=Debian-Security" in upgrades and 'Automatic-Reboot "false"' in upgrades
    first, _ = staged.runs
    assert "PLAY [Harden every Ash host" in first.stdout


def account(staged: Staged, name: str) -> list[str]:
    passwd = (staged.stage / "etc/passwd").read_text().splitlines()
    return next(line for line in passwd if line.startswith(name + ":")).split(":")


def test_the_server_and_sandbox_users_and_the_settings_file(staged: Staged) -> None:
    name, _, uid, gid, _, home, shell = account(staged, "ash-sandbox")
    assert (name, home, shell) == ("ash-sandbox", "/nonexistent", "/usr/sbin/nologin")
    assert 0 < int(uid) < 1000  # a system user
    server = account(staged, "ash")
    assert (server[5], server[6]) == ("/var/lib/ash", "/usr/sbin/nologin")
    assert 0 < int(server[2]) < 1000 and server[2] != uid  # a system user of its own, not the sandboxes'
    assert f"ash:x:{server[3]}:" in (staged.stage / "etc/group").read_text()
    host = Path("/etc/passwd").read_text()
    assert "ash-sandbox:" not in host and not host.startswith("ash:") and "\nash:" not in host  # untouched

    env_file = staged.stage / "etc/ash/ash.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((staged.stage / "etc/ash").stat().st_mode) == 0o700
    settings = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    assert settings["ASH_SANDBOX_UID"] == f'"{uid}"' and settings["ASH_SANDBOX_GID"] == f'"{gid}"'
    assert settings["ASH_API_KEY"] == f'"{SECRETS["ash_server_api_key"]}"'
    assert settings["ANTHROPIC_API_KEY"] == f'"{SECRETS["ash_server_anthropic_api_key"]}"'
    assert settings["ASH_HOST"] == '"0.0.0.0"' and settings["ASH_MAX_SANDBOXES"] == '"50"'
    assert settings["ASH_DATABASE_URL"].startswith('"postgresql://ash:pg-password-')
    # bubblewrap, the default: no gVisor drop-in, the server stays the `ash` user.
    assert settings["ASH_SANDBOX_RUNTIME"] == '"bwrap"'
    assert not (staged.stage / "etc/systemd/system/ash.service.d/gvisor.conf").exists()
    data = (staged.stage / "var/lib/ash").stat()
    assert stat.S_IMODE(data.st_mode) == 0o711
    # The server's, before systemd first starts the unit (StateDirectory= would chown a foreign one recursively).
    assert (data.st_uid, data.st_gid) == (int(server[2]), int(server[3]))


def test_the_unit_is_the_repository_s_and_verifies_against_the_staged_install(staged: Staged) -> None:
    unit = staged.stage / "etc/systemd/system/ash.service"
    assert unit.read_bytes() == (REPO / "systemd/ash.service").read_bytes()
    # systemd-analyze resolves ExecStart (/opt/ash/venv/bin/ash) inside --root: the staged virtualenv must have it.
    units = staged.stage / "usr/lib/systemd/system"
    if not units.exists():
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={staged.stage}", "--man=no", "ash.service"],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_the_virtualenv_runs_ash_and_the_sandbox_user_can_read_it(staged: Staged) -> None:
    venv = staged.stage / "opt/ash/venv"
    result = subprocess.run([str(venv / "bin/ash"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout
    imported = subprocess.run(
        [str(venv / "bin/python"), "-c", "import ash_server, ash_bridge, asyncpg; print(ash_server.__file__)"],
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(venv))  # installed from the wheel, not the checkout
    bridge = next((venv / "lib").glob("python3*/site-packages/ash_bridge/__init__.py"))
    assert bridge.stat().st_mode & 0o004


def test_the_firewall_opens_only_ssh_and_the_api_port(staged: Staged) -> None:
    rules = (staged.stage / "etc/nftables.d/ash.nft").read_text()
    assert "policy drop;" in rules
    accepted = re.findall(r"^\s*(ip6?) saddr (\S+) tcp dport (\d+) accept$", rules, flags=re.MULTILINE)
    assert sorted(accepted) == sorted(
        [("ip", "0.0.0.0/0", "22"), ("ip6", "::/0", "22"), ("ip", "10.0.0.0/16", "4100"), ("ip6", "fd00::/8", "4100")]
    )
    assert 'include "/etc/nftables.d/*.nft"' in (staged.stage / "etc/nftables.conf").read_text()
    if shutil.which("nft"):
        check = subprocess.run(["nft", "--check", "--file", str(staged.stage / "etc/nftables.d/ash.nft")])
        assert check.returncode == 0


def test_postgresql_role_and_database_exist_and_the_password_works(staged: Staged, postgres: Postgres) -> None:
    result = subprocess.run(
        [
            str(PG_BIN / "psql"),
            "-X",
            "-A",
            "-t",
            f"host=127.0.0.1 port={postgres.port} dbname=ash user=ash",
            "-c",
            "SELECT current_user, (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ash')",
        ],
        env={**os.environ, "PGPASSWORD": SECRETS["ash_postgresql_password"]},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ash|ash"


def env_settings(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_runner_role_installs_a_runner_and_refuses_without_the_internal_secret(staged: Staged) -> None:
    # The server's staged root, copied (users, virtualenv and all): the runner role then only adds what is its own.
    stage = staged.stage.with_name("runner-stage")
    subprocess.run(["cp", "-a", str(staged.stage), str(stage)], check=True)
    inventory = staged.inventory.with_name("runner-inventory")
    shutil.copytree(staged.inventory, inventory)
    hosts = json.loads((inventory / "hosts.yml").read_text())
    for group in ("ash_servers", "ash_postgresql"):
        hosts["all"]["children"][group]["hosts"] = {}
    hosts["all"]["children"]["ash_runners"]["hosts"] = {"localhost": {"ansible_host": "10.0.2.15"}}
    (inventory / "hosts.yml").write_text(json.dumps(hosts))
    settings = json.loads((inventory / "group_vars/all/main.yml").read_text())
    settings |= {
        "ash_root": str(stage),
        "ash_runner_coordinator_url": "http://10.0.1.10:4100",
        "ash_runner_coordinator_addresses": ["10.0.1.10", "fd00::10"],
        "ash_runner_snapshot_url": "s3://ash-snapshots/sessions",
        "ash_runner_max_sandboxes": 20,
        "ash_sandbox_runtime": "gvisor",
    }
    (inventory / "group_vars/all/main.yml").write_text(json.dumps(settings))
    runner = Staged(stage, inventory, staged.home, [])
    unit = stage / "etc/systemd/system/ash-runner.service"

    refused = runner.playbook("-e", json.dumps({"ash_internal_secret": "too-short"}))
    assert refused.returncode != 0
    assert "ash_internal_secret (ASH_INTERNAL_SECRET) needs 32+ random characters" in refused.stdout
    assert recap(refused)["changed"] == 0 and not unit.exists()

    first, second = runner.playbook(), runner.playbook()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap(first)["changed"] > 0
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    assert recap(second)["changed"] == 0, second.stdout[-4000:]
    for secret in SECRETS.values():
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr

    assert unit.read_bytes() == (REPO / "systemd/ash-runner.service").read_bytes()
    # gVisor sandboxes: the unit's drop-in as shipped (the server as root), and the setting.
    dropin = stage / "etc/systemd/system/ash-runner.service.d/gvisor.conf"
    assert dropin.read_bytes() == (REPO / "systemd/ash-gvisor.conf").read_bytes()
    env_file = stage / "etc/ash/ash.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = env_settings(env_file)
    assert settings["ASH_SERVER_URL"] == '"http://10.0.1.10:4100"'
    assert settings["ASH_INTERNAL_SECRET"] == f'"{SECRETS["ash_internal_secret"]}"'
    assert settings["ASH_DATABASE_URL"].startswith('"postgresql://ash:pg-password-')
    assert settings["ASH_SNAPSHOT_URL"] == '"s3://ash-snapshots/sessions"'
    assert (settings["ASH_HOST"], settings["ASH_RUNNER_PORT"]) == ('"0.0.0.0"', '"4200"')
    assert (settings["ASH_RUNNER_ID"], settings["ASH_RUNNER_ADVERTISE_HOST"]) == ('"localhost"', '"10.0.2.15"')
    assert settings["ASH_RUNNER_MAX_SANDBOXES"] == '"20"'
    assert settings["ASH_SANDBOX_RUNTIME"] == '"gvisor"'
    assert settings["ANTHROPIC_API_KEY"] == f'"{SECRETS["ash_server_anthropic_api_key"]}"'
    assert settings["ASH_CREDENTIAL_KEY"] == f'"{SECRETS["ash_server_credential_key"]}"'
    assert "ASH_API_KEY" not in settings and "ASH_MODE" not in settings

    rules = (stage / "etc/nftables.d/ash.nft").read_text()
    assert "policy drop;" in rules
    accepted = re.findall(r"^\s*(ip6?) saddr (\S+) tcp dport (\d+) accept$", rules, flags=re.MULTILINE)
    assert sorted(accepted) == sorted(
        [("ip", "0.0.0.0/0", "22"), ("ip6", "::/0", "22"), ("ip", "10.0.1.10", "4200"), ("ip6", "fd00::10", "4200")]
    )
    if shutil.which("nft"):
        check = subprocess.run(["nft", "--check", "--file", str(stage / "etc/nftables.d/ash.nft")])
        assert check.returncode == 0


def test_ansible_lint_production_profile_and_syntax_check(tmp_path: Path) -> None:
    env = ansible_env(tmp_path)
    (tmp_path / "tmp").mkdir()
    syntax = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example", "site.yml"],
        cwd=ANSIBLE,
        env=env,
        capture_output=True,
        text=True,
    )
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    lint = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
        cwd=ANSIBLE,
        env=env,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Profile 'production' was required, and it passed" in lint.stdout + lint.stderr
