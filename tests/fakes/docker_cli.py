"""A fake `docker` command line for the tests of `ash start --docker` (no Docker engine runs on these machines).

Installed as an executable named `docker` first on PATH (`install(bin_dir, state_dir)`). It records every call (argv,
and which `--env NAME` values it was handed) in `<state>/calls.jsonl` and keeps containers in `<state>/state.json`.
`docker run` starts the image's command for real on the host: `python -m ash_cli serve` with the volume's host
folder as ASH_DATA_DIR, the published host port as ASH_PORT and the `--env` settings, so the CLI's health wait,
stored key and later commands meet a real server. What it cannot show: that the image, the entrypoint and the
capability and security flags work in a real container (docs/self-hosting/docker.md says what was not exercised).

Behaviour is steered by environment variables of the process that runs it:
  FAKE_DOCKER_DAEMON=down        every command but the client's own fails as with a stopped daemon
  FAKE_DOCKER_LOCAL_IMAGES=a,b   images present locally
  FAKE_DOCKER_PULLABLE=a,b       images `docker pull` finds
  FAKE_DOCKER_RUN=crash          the container's command exits at once with an error
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


def install(bin_dir: Path, state_dir: Path) -> Path:
    """Write the `docker` executable into `bin_dir`; its state goes to `state_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "docker"
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tests.fakes.docker_cli import main\n"
        f"sys.exit(main(sys.argv[1:], {str(state_dir)!r}))\n"
    )
    path.chmod(0o755)
    return path


def calls(state_dir: Path) -> list[dict[str, object]]:
    path = state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return True


class Fake:
    def __init__(self, state_dir: str) -> None:
        self.dir = Path(state_dir)
        self.file = self.dir / "state.json"
        self.state: dict[str, dict[str, object]] = (
            json.loads(self.file.read_text()) if self.file.exists() else {"containers": {}, "images": {}}
        )

    def save(self) -> None:
        self.file.write_text(json.dumps(self.state))

    @property
    def containers(self) -> dict[str, object]:
        return self.state["containers"]

    def container_status(self, name: str) -> str:
        entry = self.containers[name]
        assert isinstance(entry, dict)
        pid = entry.get("pid")
        if entry["status"] == "running" and not (isinstance(pid, int) and _alive(pid)):
            entry["status"] = "exited"
        return str(entry["status"])

    def has_image(self, image: str) -> bool:
        local = os.environ.get("FAKE_DOCKER_LOCAL_IMAGES", "").split(",")
        return image in local or image in self.state["images"]


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def _run(fake: Fake, args: list[str]) -> int:
    name = _option(args, "--name") or "unnamed"
    if name in fake.containers:
        print(f'docker: Error response from daemon: Conflict. The container name "/{name}" is already in use.')
        return 125
    volume = _option(args, "--volume") or ""
    publish = _option(args, "--publish") or ""
    env: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg == "--env" and i + 1 < len(args):
            key, sep, value = args[i + 1].partition("=")
            if sep:
                env[key] = value
            elif key in os.environ:
                env[key] = os.environ[key]
    host_dir = volume.split(":")[0]
    host_port = publish.split(":")[1] if publish.count(":") == 2 else publish.split(":")[0]
    log = fake.dir / f"{name}.log"
    command = [sys.executable, "-m", "ash_cli", "serve"]
    if os.environ.get("FAKE_DOCKER_RUN") == "crash":
        command = ["/bin/sh", "-c", "echo 'ash: invalid configuration: ASH_API_KEY: too short' >&2; exit 3"]
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("ASH_", "ANTHROPIC_", "FAKE_DOCKER"))}
    server_env.update(env, ASH_DATA_DIR=host_dir, ASH_PORT=host_port, ASH_HOST="127.0.0.1")
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=server_env,
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    fake.containers[name] = {"status": "running", "health": "starting", "pid": process.pid, "log": str(log)}
    print(f"{process.pid:064x}")
    return 0


def _stop(fake: Fake, name: str) -> None:
    entry = fake.containers[name]
    assert isinstance(entry, dict)
    pid = entry.get("pid")
    if isinstance(pid, int) and _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    entry["status"] = "exited"


def main(argv: list[str], state_dir: str) -> int:
    fake = Fake(state_dir)
    handed = {}
    for i, arg in enumerate(argv):
        if arg == "--env" and i + 1 < len(argv) and "=" not in argv[i + 1]:
            handed[argv[i + 1]] = os.environ.get(argv[i + 1])
    with (fake.dir / "calls.jsonl").open("a") as record:
        record.write(json.dumps({"argv": argv, "env": handed}) + "\n")
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if os.environ.get("FAKE_DOCKER_DAEMON") == "down":
        print(DAEMON_DOWN, file=sys.stderr)
        return 1
    try:
        return _dispatch(fake, command, args)
    finally:
        fake.save()


def _dispatch(fake: Fake, command: str, args: list[str]) -> int:
    name = args[-1] if args else ""
    if command == "version":
        # FAKE_DOCKER_ENGINE=podman: answer as Podman's Docker-compatible API does (its components).
        podman = os.environ.get("FAKE_DOCKER_ENGINE") == "podman"
        print("4.3.1|Podman Engine;Conmon;" if podman else "28.2.2|Engine;containerd;runc;docker-init;")
        return 0
    if command == "inspect":
        if name not in fake.containers:
            print(f"Error: No such container: {name}", file=sys.stderr)
            return 1
        status = fake.container_status(name)
        entry = fake.containers[name]
        assert isinstance(entry, dict)
        print(f"{status}|{entry['health'] if status == 'running' else ''}")
        return 0
    if command == "rm":
        if name not in fake.containers:
            print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
            return 1
        if fake.container_status(name) == "running" and "--force" not in args:
            print("Error response from daemon: cannot remove a running container", file=sys.stderr)
            return 1
        _stop(fake, name)
        del fake.containers[name]
        return 0
    if command == "stop":
        if name in fake.containers:
            _stop(fake, name)
            print(name)
            return 0
        return 1
    if command == "pull":
        if name in os.environ.get("FAKE_DOCKER_PULLABLE", "").split(","):
            fake.state["images"][name] = True
            return 0
        repository = name.split(":")[0]
        print(
            f"Error response from daemon: pull access denied for {repository}, repository does not exist",
            file=sys.stderr,
        )
        return 1
    if command == "image" and args[:1] == ["inspect"]:
        if fake.has_image(name):
            print("sha256:" + "0" * 64)
            return 0
        print(f"Error: No such image: {name}", file=sys.stderr)
        return 1
    if command == "run":
        return _run(fake, args)
    if command == "logs":
        if name not in fake.containers:
            print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
            return 1
        entry = fake.containers[name]
        assert isinstance(entry, dict)
        tail = int(_option(args, "--tail") or 100)
        lines = Path(str(entry["log"])).read_text(errors="replace").splitlines()
        for line in lines[-tail:] if tail else []:
            print(line)
        return 0
    print(f"fake docker: unsupported command {command!r}", file=sys.stderr)
    return 2
