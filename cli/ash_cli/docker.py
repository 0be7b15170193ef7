"""`ash start --docker`: the server in a container, managed through the `docker` command line.

The lifecycle of the seeds: check Docker, remove a stale container, create the data dir, pull the image (unless told
not to), run it with the flags the image needs, wait until `/health` answers. Every step is a `docker` command rather
than a call to the Engine API, so the user's docker configuration (contexts, DOCKER_HOST, rootless) applies as it is,
and the tests put a fake `docker` executable first on PATH.

Why each `docker run` flag (docs/self-hosting/docker.md says the same for people):
- `--cgroupns=private` and `--cap-add=SYS_ADMIN`: the entrypoint remounts the container's own cgroup writable to give
  sandboxes their limits, then runs the server as the image's non-root `ash` user with CHOWN, DAC_OVERRIDE, FOWNER,
  KILL, SETGID and SETUID only (SETPCAP narrows the bounding set on the way). One `--cap-add` per capability: the
  daemon reads a comma-joined list as a single unknown name (`unknown capability: CAP_CHOWN,DAC_OVERRIDE,...`).
- `apparmor=unconfined`: Docker's default AppArmor profile forbids the mounts bubblewrap makes in each sandbox.
- `systempaths=unconfined`: Docker covers parts of /proc, and the kernel refuses a sandbox its own /proc while any
  of it is covered. Podman's Docker-compatible API drops that option (the docker client turns it into an empty
  `MaskedPaths`, which podman reads as "the default"), so against a Podman engine the CLI passes podman's own
  `unmask=ALL`, which the docker client hands through unchanged (found running it against podman's API).
- no `--init`: the image's entrypoint already runs tini as PID 1.
- `-p 127.0.0.1:PORT:4100`: the API is published on loopback only, as `ash start` without Docker listens.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from .config import DEFAULT_HOST
from .errors import CliError

__all__ = [
    "CAPABILITIES",
    "CONTAINER",
    "IMAGE_REPOSITORY",
    "RUN_FLAGS",
    "ContainerState",
    "Docker",
    "DockerOptions",
    "check_daemon",
    "data_dir_for",
    "default_image",
    "logs",
    "parse_env",
    "passthrough_names",
    "run_argv",
    "start",
    "state",
    "stop",
    "wait_until_healthy",
]

CONTAINER = "ash-server"
CONTAINER_PORT = 4100
DATA_MOUNT = "/data"
LABEL = "io.ash.managed=true"
STOP_TIMEOUT_S = 45
HEALTH_TIMEOUT_S = 60.0

# Where the release workflow (.github/workflows/release.yml) publishes the image; docker-compose.yml's default
# `ASH_IMAGE` and the docs name the same one, and tests keep them in step.
IMAGE_REPOSITORY = "ghcr.io/ash-ai/ash"

# What the entrypoint needs (the same list as docker-compose.yml's `cap_add`); see the module docstring.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID", "SETPCAP", "SYS_ADMIN")

# Everything `docker run` gets besides the name, volume, port, environment and image (see the module docstring).
RUN_FLAGS = [
    "--cgroupns=private",
    "--cap-drop=ALL",
    *(f"--cap-add={name}" for name in CAPABILITIES),
    "--security-opt=no-new-privileges",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    f"--stop-timeout={STOP_TIMEOUT_S}",
]

# Against a Podman engine, the one flag that differs (see the module docstring).
PODMAN_FLAGS = {"--security-opt=systempaths=unconfined": "--security-opt=unmask=ALL"}


class Engine(Enum):
    """What answers the docker client: Docker itself, or Podman's Docker-compatible API."""

    DOCKER = "docker"
    PODMAN = "podman"


# Passed from the shell into the container when set. Not the ones the image sets for its own layout (data dir, bind
# address, port, sandbox uid) nor the CLI's own; ASH_AGENT_ROOTS names host folders the container cannot see.
MODEL_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
NOT_PASSED = frozenset(
    {
        "ASH_DATA_DIR",
        "ASH_HOST",
        "ASH_PORT",
        "ASH_SANDBOX_UID",
        "ASH_SANDBOX_GID",
        "ASH_AGENT_ROOTS",
        "ASH_SERVER_URL",
        "ASH_IMAGE",
    }
)
T = TypeVar("T")
_STATE_FORMAT = "{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}"


def default_image() -> str:
    """`ghcr.io/ash-ai/ash:<version>`: the image the release workflow published for this CLI's own version, so the
    server in the container is the one the CLI was released with (`latest` when the package is not installed)."""
    try:
        version = metadata.version("ash")
    except metadata.PackageNotFoundError:
        version = "latest"
    return f"{IMAGE_REPOSITORY}:{version}"


@dataclass(frozen=True, slots=True)
class DockerOptions:
    data_dir: Path
    port: int
    image: str
    pull: bool = True
    # Extra `-e` settings: NAME=value, or NAME alone to pass the shell's value.
    env: Sequence[str] = ()
    database_url: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerState:
    status: str  # created, running, exited, ... (docker's words)
    health: str  # starting, healthy, unhealthy, or "" without a health check

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class Docker:
    """Runs `docker`; `environ` is the environment it runs in (values passed by name with `-e NAME` come from it)."""

    environ: Mapping[str, str]
    executable: str = field(init=False)

    def __post_init__(self) -> None:
        found = shutil.which("docker", path=self.environ.get("PATH"))
        if found is None:
            raise CliError(
                "Docker is not installed (no `docker` on PATH); install it, or run `ash start` without --docker"
            )
        self.executable = found

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.executable, *args],
            env=dict(env if env is not None else self.environ),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise CliError(f"`docker {args[0]}` failed: {_first_line(result.stderr) or result.returncode}")
        return result

    def stream(self, *args: str) -> int:
        """Run with the terminal attached (docker logs -f)."""
        return subprocess.run([self.executable, *args], env=dict(self.environ), check=False).returncode


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def parse_env(items: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`-e` items as a dict; NAME alone takes the shell's value (an unset NAME is an error, not an empty value)."""
    parsed: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not name or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise CliError(f"-e expects NAME=value or NAME, not {item!r}")
        if not sep:
            if name not in environ:
                raise CliError(f"-e {name}: {name} is not set in this shell")
            value = environ[name]
        parsed[name] = value
    return parsed


def passthrough_names(environ: Mapping[str, str]) -> list[str]:
    """The settings of this shell the server in the container gets (ASH_* and the model variables)."""
    names = [n for n in environ if n.startswith("ASH_") and n not in NOT_PASSED]
    names += [n for n in MODEL_VARIABLES if n in environ]
    return sorted(set(names))


def run_argv(options: DockerOptions, names: Sequence[str], engine: Engine = Engine.DOCKER) -> list[str]:
    """The `docker run` arguments. Values never appear here: every variable is passed by name (`-e NAME`), and
    docker reads it from the environment it runs in, so keys stay out of `ps` and shell history."""
    flags = [PODMAN_FLAGS.get(f, f) for f in RUN_FLAGS] if engine is Engine.PODMAN else RUN_FLAGS
    argv = ["run", "--detach", f"--name={CONTAINER}", f"--label={LABEL}", *flags]
    argv += [f"--volume={options.data_dir}:{DATA_MOUNT}", f"--publish={DEFAULT_HOST}:{options.port}:{CONTAINER_PORT}"]
    for name in names:
        argv += ["--env", name]
    argv.append(options.image)
    return argv


def state(docker: Docker) -> ContainerState | None:
    """The container's state, or None when there is no container of that name."""
    result = docker.run("inspect", "--type=container", f"--format={_STATE_FORMAT}", CONTAINER, check=False)
    if result.returncode != 0:
        return None
    status, _, health = result.stdout.strip().partition("|")
    return ContainerState(status=status, health=health)


def check_daemon(docker: Docker) -> Engine:
    """Whether the daemon answers, and which engine it is."""
    result = docker.run(
        "version", "--format={{.Server.Version}}|{{range .Server.Components}}{{.Name}};{{end}}", check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        reason = _first_line(result.stderr) or "no answer from the Docker daemon"
        raise CliError(f"Docker is not running: {reason}")
    components = result.stdout.strip().partition("|")[2].split(";")
    return Engine.PODMAN if "Podman Engine" in components else Engine.DOCKER


def _ensure_image(docker: Docker, image: str, pull: bool, say: Callable[[str], None]) -> None:
    if pull:
        pulled = docker.run("pull", "--quiet", image, check=False)
        if pulled.returncode == 0:
            return
        reason = _first_line(pulled.stderr)
        if docker.run("image", "inspect", "--format={{.Id}}", image, check=False).returncode == 0:
            say(f"could not pull {image} ({reason}); using the local image")
            return
        raise CliError(
            f"cannot pull {image} ({reason}) and there is no local image of that name; build it from the Ash "
            f"repository with `docker build -t {image} .` or pass --image"
        )
    if docker.run("image", "inspect", "--format={{.Id}}", image, check=False).returncode != 0:
        raise CliError(f"no local image {image} (--no-pull): build it with `docker build -t {image} .`")


def start(options: DockerOptions, environ: Mapping[str, str], api_key: str | None, say: Callable[[str], None]) -> str:
    """Run the container (without waiting for it, see `wait_until_healthy`); returns the API key it accepts."""
    extra = parse_env(options.env, environ)  # before anything happens: a typo costs nothing
    docker = Docker(environ)
    engine = check_daemon(docker)
    existing = state(docker)
    if existing is not None:
        if existing.running:
            raise CliError(f"the {CONTAINER} container is already running; stop it with `ash stop`")
        docker.run("rm", CONTAINER)  # a stopped one left by a crash or a reboot
    options.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _ensure_image(docker, options.image, options.pull, say)

    # The server's own generated key would be written by the container's `ash` user (uid 10000), mode 0600, unreadable
    # to this user on the host, so the CLI chooses the key and hands it over like any other setting.
    key = api_key or "ash_" + secrets.token_urlsafe(32)
    values = {name: environ[name] for name in passthrough_names(environ)}
    values.update(extra)
    if options.database_url:
        values["ASH_DATABASE_URL"] = options.database_url
    values["ASH_API_KEY"] = key
    docker.run(*run_argv(options, sorted(values), engine), env={**environ, **values})
    return key


def stop(environ: Mapping[str, str]) -> bool:
    """Stop and remove the container; False if there was none."""
    docker = Docker(environ)
    if state(docker) is None:
        return False
    docker.run("stop", "-t", str(STOP_TIMEOUT_S), CONTAINER, check=False)
    docker.run("rm", "--force", CONTAINER)
    return True


def logs(environ: Mapping[str, str], lines: int, follow: bool) -> int:
    docker = Docker(environ)
    if state(docker) is None:
        raise CliError(f"no {CONTAINER} container (start one with `ash start --docker`)")
    return docker.stream("logs", f"--tail={lines}", *(["--follow"] if follow else []), CONTAINER)


def tail_logs(docker: Docker, lines: int) -> list[str]:
    result = docker.run("logs", f"--tail={lines}", CONTAINER, check=False)
    return (result.stdout + result.stderr).splitlines()


def wait_until_healthy(
    environ: Mapping[str, str],
    health: Callable[[], T | None],
    show: Callable[[list[str]], None],
    timeout: float = HEALTH_TIMEOUT_S,
) -> T:
    """Poll `health()` until it answers; if the container stops first, `show` its last lines and fail."""
    docker = Docker(environ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = health()
        if answer is not None:
            return answer
        current = state(docker)
        if current is None or current.status in ("exited", "dead"):
            if current is not None:
                show(tail_logs(docker, 20))
            raise CliError(f"the {CONTAINER} container stopped before it was ready (see `docker logs {CONTAINER}`)")
        time.sleep(0.25)
    raise CliError(f"the {CONTAINER} container did not answer within {timeout:.0f} s (see `ash logs`)")


def data_dir_for(environ: Mapping[str, str]) -> Path:
    """The host folder mounted at /data: ASH_DATA_DIR if set, else ~/.ash, for every user (root included)."""
    if environ.get("ASH_DATA_DIR"):
        return Path(environ["ASH_DATA_DIR"]).expanduser().absolute()
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".ash"
