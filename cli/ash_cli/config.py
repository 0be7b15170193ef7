"""Where the server is and which API key to use.

Precedence, per value: the environment (`ASH_SERVER_URL`, `ASH_API_KEY`, `ASH_DATA_DIR`) > `~/.ash/config.json`
(written by `ash start`) > defaults (`http://127.0.0.1:<ASH_PORT or 4100>`, the key the server wrote to
`<data dir>/api-key`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CliError

__all__ = [
    "ClientConfig",
    "StoredConfig",
    "config_path",
    "default_data_dir",
    "default_port",
    "load_stored",
    "resolve",
    "save_stored",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4100
# The server runs sandboxes as another user when it is root; that user must traverse to the data dir, and
# root's home is 0700, so a root server keeps its data where system services do.
ROOT_DATA_DIR = Path("/var/lib/ash")
API_KEY_FILE = "api-key"


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """The contents of ~/.ash/config.json; every field optional."""

    server_url: str | None = None
    api_key: str | None = None
    data_dir: str | None = None
    pid: int | None = None
    # The container of a server started with `ash start --docker` (then there is no pid).
    container: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "serverUrl": self.server_url,
            "apiKey": self.api_key,
            # The reference CLI's spellings of the same two values: it works against this server unchanged.
            "server_url": self.server_url,
            "api_key": self.api_key,
            "dataDir": self.data_dir,
            "pid": self.pid,
            "container": self.container,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StoredConfig:
        def text(key: str, *others: str) -> str | None:
            for name in (key, *others):
                value = raw.get(name)
                if isinstance(value, str) and value:
                    return value
            return None

        pid = raw.get("pid")
        return cls(
            server_url=text("serverUrl", "server_url"),  # written by the reference CLI's `ash link`, too
            api_key=text("apiKey", "api_key"),
            data_dir=text("dataDir"),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
            container=text("container"),
        )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The resolved configuration, with where the key came from (to explain a 401)."""

    server_url: str
    api_key: str | None
    api_key_source: str
    data_dir: Path
    pid: int | None
    config_file: Path


def home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def config_path(env: Mapping[str, str] | None = None) -> Path:
    return home(os.environ if env is None else env) / ".ash" / "config.json"


def default_port(env: Mapping[str, str]) -> int:
    raw = env.get("ASH_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise CliError(f"ASH_PORT must be a port number, not {raw!r}") from None
    if not 1 <= port <= 65535:
        raise CliError(f"ASH_PORT must be between 1 and 65535, not {port}")
    return port


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """ASH_DATA_DIR, else /var/lib/ash for root, else ~/.ash."""
    env = os.environ if env is None else env
    if env.get("ASH_DATA_DIR"):
        return Path(env["ASH_DATA_DIR"]).expanduser().absolute()
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return home(env) / ".ash"


def load_stored(path: Path) -> StoredConfig:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return StoredConfig()
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc} (fix or delete it; `ash start` writes a new one)") from exc
    if not isinstance(raw, dict):
        raise CliError(f"{path} must hold a JSON object (fix or delete it; `ash start` writes a new one)")
    return StoredConfig.from_json(raw)


def save_stored(path: Path, config: StoredConfig) -> None:
    """Write the file 0600 inside a 0700 folder; it holds an API key."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config.to_json(), handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover tmp file
    os.replace(tmp, path)


def read_key_file(data_dir: Path) -> str | None:
    try:
        key = (data_dir / API_KEY_FILE).read_text().strip()
    except OSError:
        return None
    return key or None


def resolve(env: Mapping[str, str] | None = None) -> ClientConfig:
    env = os.environ if env is None else env
    path = config_path(env)
    stored = load_stored(path)

    if env.get("ASH_DATA_DIR"):
        data_dir = default_data_dir(env)
    elif stored.data_dir:
        data_dir = Path(stored.data_dir)
    else:
        data_dir = default_data_dir(env)

    server_url = env.get("ASH_SERVER_URL") or stored.server_url or f"http://{DEFAULT_HOST}:{default_port(env)}"

    api_key, source = env.get("ASH_API_KEY") or None, "ASH_API_KEY"
    if api_key is None:
        api_key, source = stored.api_key, str(path)
    if api_key is None:
        api_key, source = read_key_file(data_dir), str(data_dir / API_KEY_FILE)
    if api_key is None:
        source = "none"

    return ClientConfig(
        server_url=server_url.rstrip("/"),
        api_key=api_key,
        api_key_source=source,
        data_dir=data_dir,
        pid=stored.pid,
        config_file=path,
    )
