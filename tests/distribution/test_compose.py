"""docker-compose.yml, for real, under podman-compose: the server and PostgreSQL come up healthy, a turn goes through,
`ash backup` inside the stack, then `ash restore` into a fresh stack (new volumes, new database) brings the agent and
the session back, memory included."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.distribution import images
from tests.distribution.ash_client import Deployed
from tests.distribution.podman import REPO, podman, podman_env
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import free_port

API_KEY = "ash_compose_0123456789abcdef012345"
POSTGRES_IMAGE = "docker.io/library/postgres:15-bookworm"
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"


class Stack:
    """One compose project: its own name, volumes, published port and `.env`."""

    def __init__(self, project: str, image: str, model: FakeAnthropic, work: Path) -> None:
        self.project = project
        self.port = free_port()
        self.env_file = work / f"{project}.env"
        settings = {
            "POSTGRES_PASSWORD": "0123456789abcdef" + project.encode().hex()[:16],
            "ASH_API_KEY": API_KEY,
            "ANTHROPIC_API_KEY": "sk-ant-compose-test",
            "ANTHROPIC_BASE_URL": model.url,
            "ASH_IMAGE": image,
            "ASH_PUBLISH": f"127.0.0.1:{self.port}",
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.env_file.chmod(0o600)
        home = work / f"{project}-home"
        home.mkdir()
        self.server = Deployed(f"http://127.0.0.1:{self.port}", API_KEY, home)

    def compose(self, *args: str, timeout: float = 600) -> str:
        argv = [str(PODMAN_COMPOSE), "-f", str(REPO / "docker-compose.yml"), "-p", self.project]
        argv += ["--env-file", str(self.env_file), *args]
        # Only the .env file configures the stack, as in the docs: nothing leaks in from this process.
        env = {k: v for k, v in podman_env().items() if not k.startswith(("ASH_", "ANTHROPIC_", "POSTGRES_"))}
        result = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        assert result.returncode == 0, f"podman-compose {' '.join(args)}:\n{output}"
        return result.stdout

    def container(self, service: str) -> str:
        names = podman(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        assert len(names) == 1, names
        return names[0]

    def wait_healthy(self, service: str, limit_s: float = 180) -> None:
        deadline = time.monotonic() + limit_s
        container = self.container(service)
        while time.monotonic() < deadline:
            state = json.loads(podman("inspect", container).stdout)[0]["State"]
            health = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
            if health == "healthy":
                return
            # podman runs health checks from systemd timers, which this host has none of: run one now.
            podman("healthcheck", "run", container, check=False)
            time.sleep(2)
        raise AssertionError(f"{container} not healthy within {limit_s} s:\n{podman('logs', container).stderr[-3000:]}")

    def down(self) -> None:
        with contextlib.suppress(AssertionError):
            self.compose("down", "-v", "-t", "5", timeout=300)


@pytest.fixture(scope="module")
def compose_images(debian_image: str) -> str:
    images.build_postgres(debian_image, POSTGRES_IMAGE)
    return images.build_ash(debian_image)


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ash-dist-compose-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stacks(compose_images: str, model: FakeAnthropic, work: Path) -> Iterator[list[Stack]]:
    made: list[Stack] = []
    try:
        yield made
    finally:
        for stack in made:
            stack.down()


def test_compose_with_postgresql_backup_and_restore_into_a_fresh_stack(
    compose_images: str, model: FakeAnthropic, work: Path, stacks: list[Stack]
) -> None:
    first = Stack(f"ashdist{os.getpid()}a", compose_images, model, work)
    stacks.append(first)
    first.compose("up", "-d")
    first.wait_healthy("postgres")
    first.wait_healthy("ash")
    server = first.server
    assert server.wait_healthy()["status"] == "ok"
    server.deploy_hello()
    session_id = server.new_session()
    assert "remember the compose turn" in server.send(session_id, "remember the compose turn")
    tables = podman(
        "exec", first.container("postgres"), "psql", "-At", "-U", "ash", "-d", "ash", "-c",
        f"SELECT count(*) FROM sessions WHERE id::text = '{session_id}'",
    ).stdout.strip()  # fmt: skip
    assert tables == "1", tables

    # `ash backup` where the server's settings are: in its container (pg_dump is in the image).
    ash = first.container("ash")
    podman("exec", ash, "ash", "backup", "/data/ash-backup.tar.gz", timeout=300)
    archive = work / "ash-backup.tar.gz"
    podman("cp", f"{ash}:/data/ash-backup.tar.gz", str(archive))
    assert archive.stat().st_size > 0
    # The operator hands the archive (0600, it holds the keys) to the user the server runs as in the image.
    os.chown(archive, 10000, 10000)

    second = Stack(f"ashdist{os.getpid()}b", compose_images, model, work)
    stacks.append(second)
    second.compose("up", "-d", "postgres")
    second.wait_healthy("postgres")
    second.compose(
        "run", "--rm", "--no-deps", "-v", f"{archive}:/restore/ash-backup.tar.gz:ro", "ash",
        "ash", "restore", "/restore/ash-backup.tar.gz", timeout=300,
    )  # fmt: skip
    second.compose("up", "-d")
    second.wait_healthy("ash")
    restored = second.server
    restored.wait_healthy()
    agents = restored.get("/api/agents")
    assert isinstance(agents, dict) and "hello" in {a["name"] for a in agents["agents"]}, agents
    restored.ash("session", "resume", session_id)
    reply = restored.send(session_id, "after the restore")
    assert "after the restore" in reply and "remember the compose turn" in reply, reply
