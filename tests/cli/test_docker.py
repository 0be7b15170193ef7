"""`ash start --docker` and the Docker side of stop/status/logs, against a fake `docker` executable.

No Docker engine runs here. The fake (tests/fakes/docker_cli.py) records every docker command and runs the image's
command (`ash serve`) on the host, so the lifecycle (check, stale container, data dir, pull, run, health wait, stored
key) meets a real server. The `docker run` arguments are also parsed by the real docker client when it is installed,
and compared with the `docker run` block of docs/self-hosting/docker.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

import pytest

from ash_cli import docker
from ash_cli.errors import CliError
from tests.cli.test_cli import HELLO_AGENT, Cli, assert_one_line_error, make_cli
from tests.fakes import docker_cli
from tests.fakes.anthropic_api import FakeAnthropic, text

IMAGE = "ash:test"
REPO = Path(__file__).resolve().parents[2]
DOCKER_DOC = REPO / "docs" / "self-hosting" / "docker.md"
# What the entrypoint needs (ADR 0008): written out here so a change to the CLI's list is a deliberate one.
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID", "SETPCAP", "SYS_ADMIN"]


def docker_cli_for(model_url: str) -> tuple[Cli, Path]:
    cli = make_cli(model_url)
    state = cli.root / "docker-state"
    docker_cli.install(cli.root / "bin", state)
    del cli.env["ASH_DATA_DIR"]  # the docker path mounts ~/.ash
    cli.env.update(PATH=f"{cli.root / 'bin'}:{os.environ['PATH']}", FAKE_DOCKER_LOCAL_IMAGES=IMAGE)
    return cli, state


def run_calls(state: Path) -> list[list[str]]:
    return [c["argv"] for c in docker_cli.calls(state) if c["argv"][:1] == ["run"]]  # type: ignore[index]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=text("ok")) as model:
        yield model


@pytest.fixture
def cli(fake: FakeAnthropic) -> Iterator[tuple[Cli, Path]]:
    cli, state = docker_cli_for(fake.url)
    try:
        yield cli, state
    finally:
        cli.run("stop", timeout=60)
        shutil.rmtree(cli.root, ignore_errors=True)


def test_start_docker_runs_the_lifecycle_and_the_cli_uses_the_container(
    cli: tuple[Cli, Path], fake: FakeAnthropic
) -> None:
    ash, state = cli
    started = ash.run("start", "--docker", "--image", IMAGE, "-e", "ASH_MAX_SANDBOXES=7", ASH_LOG_LEVEL="info")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"could not pull {IMAGE}" in started.stderr  # the registry has no such image; the local one is used
    assert "container ash-server" in started.stdout

    commands = [c["argv"][0] for c in docker_cli.calls(state)]  # type: ignore[index]
    assert commands[:5] == ["version", "inspect", "pull", "image", "run"]

    (argv,) = run_calls(state)
    home_data = ash.home / ".ash"
    assert argv[:3] == ["run", "--detach", "--name=ash-server"]
    assert set(docker.RUN_FLAGS) <= set(argv)
    assert [a for a in argv if a.startswith("--cap-add")] == [f"--cap-add={name}" for name in CAPABILITIES]
    assert f"--volume={home_data}:/data" in argv
    assert f"--publish=127.0.0.1:{ash.env['ASH_PORT']}:4100" in argv
    assert argv[-1] == IMAGE
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert "ASH_API_KEY" in names and "ANTHROPIC_API_KEY" in names and "ANTHROPIC_BASE_URL" in names
    assert "ASH_MAX_SANDBOXES" in names and "ASH_LOG_LEVEL" in names
    assert not {"ASH_DATA_DIR", "ASH_HOST", "ASH_PORT", "ASH_SANDBOX_UID"} & set(names)

    config = json.loads((home_data / "config.json").read_text())
    key = config["apiKey"]
    assert config == {
        "serverUrl": f"http://127.0.0.1:{ash.env['ASH_PORT']}",
        "apiKey": key,
        "server_url": f"http://127.0.0.1:{ash.env['ASH_PORT']}",  # the reference CLI's names
        "api_key": key,
        "dataDir": str(home_data),
        "container": "ash-server",
    }
    # Secrets go by name: docker reads the values from its environment, never from its arguments.
    (run_call,) = [c for c in docker_cli.calls(state) if c["argv"][:1] == ["run"]]  # type: ignore[index]
    assert run_call["env"]["ASH_API_KEY"] == key  # type: ignore[index]
    assert run_call["env"]["ASH_MAX_SANDBOXES"] == "7"  # type: ignore[index]
    assert not any(key in a or "sk-test" in a for a in argv)

    # The CLI now talks to the server in the "container" with the stored key.
    fake.on("hello", text("Hello from the container!"))
    assert ash.run("deploy", str(HELLO_AGENT), "--name", "hello-agent").returncode == 0
    chat = ash.run("chat", "hello-agent", "hello")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "Hello from the container!\n"

    status = ash.run("status")
    assert status.returncode == 0, status.stderr
    assert "container ash-server: running" in status.stdout
    as_json = json.loads(ash.run("status", "--json").stdout)
    assert as_json["container"]["status"] == "running"

    logs = ash.run("logs", "-n", "200")
    assert logs.returncode == 0, logs.stderr
    assert "listening" in logs.stdout

    again = ash.run("start", "--docker", "--image", IMAGE)
    assert_one_line_error(again, "already answering")

    stopped = ash.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped and removed" in stopped.stdout
    assert ["rm", "--force", "ash-server"] in [c["argv"] for c in docker_cli.calls(state)]
    assert "container" not in json.loads((home_data / "config.json").read_text())
    assert ash.run("status").returncode == 1

    # A second start on the same data dir keeps the key clients already have.
    restarted = ash.run("start", "--docker", "--image", IMAGE, "--no-pull")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads((home_data / "config.json").read_text())["apiKey"] == key


def test_the_run_arguments_parse_with_the_real_docker_client(cli: tuple[Cli, Path]) -> None:
    real = Path("/usr/local/bin/docker") if Path("/usr/local/bin/docker").exists() else None
    real = real or (Path(p) if (p := shutil.which("docker")) and "docker-state" not in p else None)
    if real is None:
        pytest.skip("no real docker client installed")
    options = docker.DockerOptions(data_dir=Path("/tmp/ash-data"), port=4100, image=IMAGE)
    argv = docker.run_argv(options, ["ANTHROPIC_API_KEY", "ASH_API_KEY"])
    result = subprocess.run(
        [str(real), *argv],
        env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent/docker.sock", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    # The client validates every flag before it connects: reaching the connection error means they all parsed.
    assert "Cannot connect to the Docker daemon" in result.stderr, result.stderr


def test_each_capability_is_its_own_cap_add() -> None:
    """The daemon reads `--cap-add=CHOWN,DAC_OVERRIDE` as one capability named `CAP_CHOWN,DAC_OVERRIDE` and refuses
    it; the client parses either form (the test above cannot tell them apart), so the arguments are checked here."""
    options = docker.DockerOptions(data_dir=Path("/tmp/ash-data"), port=4100, image=IMAGE)
    argv = docker.run_argv(options, ["ASH_API_KEY"])
    cap_adds = [a for a in argv if a.startswith("--cap-add")]
    assert cap_adds == [f"--cap-add={name}" for name in CAPABILITIES]
    assert list(docker.CAPABILITIES) == CAPABILITIES
    assert not any("," in a for a in argv if a.startswith("--cap-"))
    assert argv.count("--cap-drop=ALL") == 1 and argv.index("--cap-drop=ALL") < argv.index(cap_adds[0])


def doc_run_block() -> str:
    """The first ```bash block of the `## docker run` section: the command people copy."""
    section = DOCKER_DOC.read_text().split("\n## docker run\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```bash\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert match, "no ```bash block in the `## docker run` section"
    return match.group(1)


# Flags whose values are the user's (which variables, which folder, which port, what name) rather than the image's.
USER_VALUES = ("--name", "--env", "--volume", "--publish")


def flags(args: Sequence[str]) -> list[str]:
    """`docker run` flags as `--flag=value` (the CLI writes `--env NAME`, the docs `--env=NAME`), the values of
    USER_VALUES left out."""
    normal: list[str] = []
    pending = ""
    for arg in args:
        if pending:
            normal.append(f"{pending}={arg}")
            pending = ""
        elif arg == "--env":
            pending = arg
        else:
            assert arg.startswith("--"), arg
            normal.append(arg)
    return [f.partition("=")[0] if f.partition("=")[0] in USER_VALUES else f for f in normal]


def test_the_docs_docker_run_block_has_the_cli_flags() -> None:
    block = doc_run_block()
    lines = block.splitlines()
    # One flag a line, each line but the last continued, the image last: the shape a distribution test reads.
    assert lines[0] == "docker run \\"
    assert all(line.startswith("  --") and line.endswith(" \\") for line in lines[1:-1]), lines
    assert all(len(shlex.split(line.removesuffix("\\"))) == 1 for line in lines[1:-1]), lines
    words = shlex.split(block.replace("\\\n", " "))  # a continuation is a space to the shell; shlex keeps the newline
    assert words[:2] == ["docker", "run"]
    *doc_flags, image = words[2:]
    assert image == docker.default_image()

    options = docker.DockerOptions(data_dir=Path("/tmp/ash-data"), port=4100, image=docker.default_image())
    argv = docker.run_argv(options, ["ANTHROPIC_API_KEY", "ASH_API_KEY"])
    assert argv[0] == "run" and argv[-1] == options.image
    assert flags(doc_flags) == flags(argv[1:-1])
    assert "--name=ash-server" in doc_flags  # the container `ash stop`, `status` and `logs` act on


def test_the_cli_compose_and_pyproject_agree_on_the_published_image() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert metadata.version("ash") == version  # the installed CLI is this checkout (reinstall after a bump)
    assert docker.IMAGE_REPOSITORY == "ghcr.io/ash-ai/ash"
    assert docker.default_image() == f"ghcr.io/ash-ai/ash:{version}"
    compose = (REPO / "docker-compose.yml").read_text()
    (default,) = re.findall(r"^    image: \$\{ASH_IMAGE:-([^}]+)\}$", compose, flags=re.MULTILINE)
    assert default == docker.default_image()
    assert re.search(r"^    build: \.$", compose, flags=re.MULTILINE)  # `docker compose up --build` stays possible
    (cap_add,) = re.findall(r"^    cap_add: \[(.*)\]$", compose, flags=re.MULTILINE)
    assert [c.strip() for c in cap_add.split(",")] == CAPABILITIES


def test_against_podmans_docker_api_the_proc_mask_is_lifted_podmans_way(cli: tuple[Cli, Path]) -> None:
    ash, state = cli
    started = ash.run("start", "--docker", "--image", IMAGE, "--no-pull", FAKE_DOCKER_ENGINE="podman")
    assert started.returncode == 0, started.stdout + started.stderr
    (run,) = run_calls(state)
    assert "--security-opt=unmask=ALL" in run and "--security-opt=systempaths=unconfined" not in run
    # Everything else is the Docker set.
    assert sorted(set(docker.RUN_FLAGS) - set(run)) == ["--security-opt=systempaths=unconfined"]


def test_a_stale_container_is_removed_and_a_crash_shows_its_log(cli: tuple[Cli, Path]) -> None:
    ash, state = cli
    (state / "state.json").write_text(
        json.dumps({"containers": {"ash-server": {"status": "exited", "health": "", "pid": None}}, "images": {}})
    )
    result = ash.run("start", "--docker", "--image", IMAGE, "--no-pull", FAKE_DOCKER_RUN="crash")
    assert result.returncode == 1
    assert ["rm", "ash-server"] in [c["argv"] for c in docker_cli.calls(state)]
    assert "ASH_API_KEY: too short" in result.stderr  # the container's last lines, then one line that says why
    assert "container stopped before it was ready" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_docker_problems_are_one_line_errors(cli: tuple[Cli, Path], tmp_path: Path) -> None:
    ash, state = cli
    assert_one_line_error(
        ash.run("start", "--docker", FAKE_DOCKER_DAEMON="down"), "Docker is not running", "Cannot connect"
    )
    assert_one_line_error(
        ash.run("start", "--docker", "--image", "ash:missing", "--no-pull"),
        "no local image ash:missing",
        "docker build",
    )
    assert_one_line_error(ash.run("start", "--docker", "--image", "ash:missing"), "cannot pull ash:missing")
    assert_one_line_error(ash.run("start", "--docker", "-e", "NOT_SET_ANYWHERE"), "NOT_SET_ANYWHERE is not set")
    assert_one_line_error(ash.run("start", "--image", IMAGE), "go with --docker")
    no_docker = ash.run("start", "--docker", PATH=str(tmp_path))
    assert_one_line_error(no_docker, "Docker is not installed")
    assert run_calls(state) == []

    (state / "state.json").write_text(
        json.dumps({"containers": {"ash-server": {"status": "running", "health": "", "pid": 1}}, "images": {}})
    )
    assert_one_line_error(ash.run("start", "--docker", "--image", IMAGE), "already running", "ash stop")


def test_environment_passthrough_and_parsing() -> None:
    environ = {
        "ASH_MAX_SANDBOXES": "5",
        "ASH_DATA_DIR": "/x",
        "ASH_PORT": "1",
        "ASH_SERVER_URL": "http://a",
        "ASH_AGENT_ROOTS": "/home",
        "ANTHROPIC_API_KEY": "sk-1",
        "HOME": "/home/u",
        "OTHER": "no",
    }
    assert docker.passthrough_names(environ) == ["ANTHROPIC_API_KEY", "ASH_MAX_SANDBOXES"]
    assert docker.parse_env(["A=1", "B=x=y", "HOME"], environ) == {"A": "1", "B": "x=y", "HOME": "/home/u"}
    for bad in ("=1", "1A=2", "A-B=3"):
        with pytest.raises(CliError):
            docker.parse_env([bad], environ)
    assert docker.data_dir_for(environ) == Path("/x")
    assert docker.data_dir_for({"HOME": "/home/u"}) == Path("/home/u/.ash")
