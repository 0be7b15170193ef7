"""The image, for real: the Dockerfile built with podman, run with exactly the `docker run` flags of
docs/self-hosting/docker.md, then health, a deploy, turns, a graceful stop, a restart that resumes the session; and
`ash start --docker` driving the real docker client against podman's Docker-compatible API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.distribution import images
from tests.distribution.ash_client import Deployed
from tests.distribution.podman import LABEL, REPO, podman, podman_env
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import free_port

API_KEY = "ash_image_0123456789abcdef0123456789"
# The server's effective capabilities: CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID (bits 0, 1, 3, 5, 6, 7).
SERVER_CAPABILITIES = f"{(1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7):016x}"
PROCESS_STATUS = """
import os, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
    except OSError:
        continue
    name = " ".join(a.decode(errors="replace") for a in argv[:3]).replace("\\n", " ")
    print(pid, status["Uid"].split()[0], status["CapEff"].strip(), name, sep="|")
"""


@pytest.fixture(scope="session")
def ash_image(debian_image: str) -> str:
    return images.build_ash(debian_image)


def processes(container: str) -> list[tuple[str, str, str, str]]:
    out = podman("exec", container, "/usr/bin/python3", "-c", PROCESS_STATUS).stdout
    return [tuple(line.split("|", 3)) for line in out.splitlines()]  # type: ignore[misc]


def documented_run(image: str, name: str, volume: str, port: int) -> list[str]:
    """The doc's command with this test's container name, volume, port and image; every other flag as written."""
    argv = images.documented_docker_run((REPO / "docs" / "self-hosting" / "docker.md").read_text())
    replaced = []
    for arg in argv[2:-1]:
        if arg.startswith("--name="):
            arg = f"--name={name}"
        elif arg.startswith("--volume=") and arg.endswith(":/data"):
            arg = f"--volume={volume}:/data"
        elif arg.startswith("--publish="):
            arg = f"--publish=127.0.0.1:{port}:4100"
        replaced.append(arg)
    # The fake model's address, the one addition: the documented command talks to the real API.
    return ["run", *replaced, "--env=ANTHROPIC_BASE_URL", f"--label={LABEL}", image]


class Documented:
    def __init__(self, image: str, model: FakeAnthropic, work: Path) -> None:
        self.name = f"ash-dist-image-{os.getpid()}"
        self.volume = f"{self.name}-data"
        port = free_port()
        self.argv = documented_run(image, self.name, self.volume, port)
        self.env = {"ANTHROPIC_API_KEY": "sk-ant-image-test", "ASH_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": model.url}
        self.server = Deployed(f"http://127.0.0.1:{port}", API_KEY, work)

    def run(self) -> None:
        result = subprocess.run(
            ["podman", *self.argv], env={**podman_env(), **self.env}, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"podman {' '.join(self.argv)}:\n{result.stderr}"

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]


@pytest.fixture(scope="module")
def documented(ash_image: str, model: FakeAnthropic) -> Iterator[Documented]:
    work = Path(tempfile.mkdtemp(prefix="ash-dist-image-"))
    container = Documented(ash_image, model, work)
    container.run()
    try:
        yield container
    finally:
        podman("rm", "-f", "-t", "0", container.name, check=False)
        podman("volume", "rm", "-f", container.volume, check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_the_documented_flags_run_a_non_root_server_that_serves_turns(documented: Documented) -> None:
    server = documented.server
    try:
        health = server.wait_healthy(120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{documented.logs()}") from exc
    assert health["status"] == "ok", health
    server.deploy_hello()
    session_id = server.new_session()
    assert "first in the container" in server.send(session_id, "first in the container")
    server.check_bridge_bytecode(session_id)  # the Dockerfile's install
    serving = [p for p in processes(documented.name) if "ash serve" in p[3]]
    assert serving, processes(documented.name)
    for _, uid, capabilities, _ in serving:
        assert (uid, capabilities) == ("10000", SERVER_CAPABILITIES)
    # The session's sandbox: the sandbox user, no capability at all.
    sandboxed = [p for p in processes(documented.name) if p[1] == "10001"]
    assert sandboxed, processes(documented.name)
    assert {p[2] for p in sandboxed} == {"0000000000000000"}


def test_a_graceful_stop_and_a_restart_keep_the_session(documented: Documented) -> None:
    server = documented.server
    server.wait_healthy(120)
    listed = server.get("/api/sessions")
    assert isinstance(listed, dict) and listed["sessions"], listed
    session_id = listed["sessions"][0]["id"]
    podman("stop", documented.name, timeout=120)
    state = json.loads(podman("inspect", documented.name).stdout)[0]["State"]
    # SIGTERM reached the server through tini; it finished shutting down (uvicorn then re-raises the signal: 143,
    # as for any process that honours SIGTERM) well before the stop timeout's SIGKILL (137).
    assert state["ExitCode"] in (0, 143), (state, documented.logs())
    assert "Finished server process" in documented.logs()
    podman("start", documented.name)
    server.wait_healthy(120)
    server.ash("session", "resume", session_id)
    reply = server.send(session_id, "second after the restart")
    assert "second after the restart" in reply and "first in the container" in reply, reply


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry, the CNCF distribution) on loopback: the stand-in for GHCR."""
    port = free_port()
    config = tmp_path / "registry.yml"
    storage = tmp_path / "registry"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {storage}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, f"docker-registry exited: {process.stderr.read() if process.stderr else ''}"
            assert time.monotonic() < deadline, "docker-registry did not answer"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def docker_api(tmp_path: Path, registry: str) -> Iterator[tuple[str, dict[str, str]]]:
    """podman's Docker-compatible API on a socket of its own, what the docker client talks to, with the published
    image's registry answered by the local one (registries.conf rewrites the location: nothing leaves the machine)."""
    from ash_cli.docker import IMAGE_REPOSITORY

    prefix = IMAGE_REPOSITORY.rsplit("/", 1)[0]  # ghcr.io/ash-ai
    registries = tmp_path / "registries.conf"
    registries.write_text(
        "unqualified-search-registries = []\n"
        f'[[registry]]\nprefix = "{prefix}"\nlocation = "{registry}/{prefix.split("/", 1)[1]}"\ninsecure = true\n'
    )
    env = {**podman_env(), "CONTAINERS_REGISTRIES_CONF": str(registries)}
    socket = tmp_path / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert time.monotonic() < deadline, "podman system service did not create its socket"
            assert service.poll() is None, "podman system service exited"
            time.sleep(0.2)
        yield f"unix://{socket}", env
    finally:
        service.terminate()
        service.wait(timeout=30)


def test_ash_start_docker_pulls_the_published_image_and_runs_it_through_the_docker_api(
    ash_image: str, registry: str, docker_api: tuple[str, dict[str, str]], model: FakeAnthropic, tmp_path: Path
) -> None:
    from ash_cli.docker import IMAGE_REPOSITORY, default_image

    published = default_image()
    # The release, as the workflow would have pushed it, in the registry; not on this machine.
    mirrored = published.replace(IMAGE_REPOSITORY.rsplit("/", 1)[0], f"{registry}/ash-ai", 1)
    podman("tag", ash_image, mirrored)
    podman("push", "--tls-verify=false", mirrored, timeout=600)
    podman("rmi", "-f", mirrored, published, check=False)
    assert podman("image", "exists", published, check=False).returncode != 0
    socket, _ = docker_api
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASH_")},
        "HOME": str(home),
        "DOCKER_HOST": socket,
        "ANTHROPIC_API_KEY": "sk-ant-start-docker",
        "ANTHROPIC_BASE_URL": model.url,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    ash = str(Path(sys.executable).parent / "ash")

    def run(*args: str, timeout: float = 300) -> str:
        result = subprocess.run([ash, *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"ash {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    try:
        started = run("start", "--docker", "--port", str(port))
        assert "could not pull" not in started and "is running" in started, started
        assert podman("image", "exists", published, check=False).returncode == 0  # pulled, under its own name
        run("deploy", str(REPO / "examples" / "hello-agent"), "--name", "hello")
        assert "through ash start --docker" in run("chat", "hello", "through ash start --docker")
        assert (home / ".ash" / "config.json").exists()
    finally:
        stopped = subprocess.run([ash, "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    remaining = podman("ps", "-a", "--filter", "name=^ash-server$", "--format", "{{.Names}}").stdout.strip()
    assert remaining == "", remaining
