"""What every command shares: the `--json` flag, the resolved configuration, a client, and errors as one line."""

from __future__ import annotations

import importlib.metadata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import typer

from .client import AshClient
from .config import ClientConfig, resolve
from .errors import (
    AshClientError,
    AuthenticationError,
    CliError,
    ConnectionFailed,
    ServerError,
)
from .output import print_json

__all__ = [
    "NO_KEY",
    "JsonOption",
    "State",
    "cli_version",
    "explain",
    "print_version",
    "session_id",
    "state",
    "wants_json",
]

NO_KEY = "no API key found (set ASH_API_KEY or run `ash start`)"

# `--json` works both before the command (`ash --json agent list`) and after it (`ash agent list --json`).
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@dataclass
class State:
    json: bool = False
    _config: ClientConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> ClientConfig:
        if self._config is None:
            self._config = resolve()
        return self._config

    def client(self, *, auth: bool = True) -> AshClient:
        """A client for the configured server; `auth=False` for the routes that need no key (/health)."""
        config = self.config
        if auth and not config.api_key:
            raise CliError(NO_KEY)
        return AshClient(config.server_url, config.api_key if auth else None)


T = TypeVar("T")


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    return found if found is not None else ctx.ensure_object(State)


def wants_json(ctx: typer.Context, flag: bool) -> bool:
    return flag or state(ctx).json


def show(ctx: typer.Context, json_output: bool, value: T, render: Callable[[T], None]) -> None:
    """`value` as JSON when asked for (`--json`, here or on `ash`), else as `render` draws it."""
    if wants_json(ctx, json_output):
        print_json(value)
    else:
        render(value)


def session_id(raw: str) -> str:
    """Session ids are UUIDs; say so before the server answers with a validation error."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise CliError(f"{raw!r} is not a session id (expected a UUID, see `ash session list`)") from None


def cli_version() -> str:
    """The installed `ash` distribution's version (the server's `__version__` is the same number)."""
    try:
        return importlib.metadata.version("ash")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without an install
        return "unknown"


def print_version(value: bool) -> None:
    """`ash --version`: eager, so it answers before any command (or configuration) is looked at."""
    if value:
        print(f"ash {cli_version()}")
        raise typer.Exit()


def explain(exc: Exception) -> str:
    """The one line a person needs: what is wrong and what to do, without a traceback."""
    if type(exc) is ConnectionFailed:
        return f"Ash server is not running at {exc.url} (start it with `ash start`)"
    if isinstance(exc, AuthenticationError):
        if "missing" in exc.message.lower():
            return NO_KEY
        return "invalid API key (set ASH_API_KEY or run `ash start`)"
    if isinstance(exc, ServerError):
        return f"the server failed ({exc.status_code}): {exc.message} (see `ash logs`)"
    if isinstance(exc, AshClientError):
        return exc.message
    if isinstance(exc, CliError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"
