"""Commands for the server host: `admin create-tenant | create-key | list-tenants`, `backup`, `restore`.

They open the server's database and data dir directly (ASH_DATA_DIR, ASH_DATABASE_URL and the server secret, as
the server reads them), so they need the server installed and its environment; no HTTP route does any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape

from ..config import default_data_dir
from ..context import JsonOption, wants_json
from ..errors import CliError
from ..output import err, key_values, out, print_json

if TYPE_CHECKING:
    from ash_server.settings import Settings

__all__ = ["admin_app", "register"]

T = TypeVar("T")

admin_app = typer.Typer(
    help="Tenants and their first keys, on the server host (uses the server's data dir and database directly).",
    no_args_is_help=True,
)


def server_settings() -> Settings:
    """The server's settings from this environment; the data dir defaults to what `ash start` uses."""
    # Imported here: the rest of the CLI must work without the server and its database drivers.
    from pydantic import ValidationError

    from ash_server.settings import Settings

    try:
        if os.environ.get("ASH_DATA_DIR"):
            return Settings()
        return Settings(data_dir=default_data_dir())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid configuration: {problems}") from exc


@contextlib.contextmanager
def server_errors() -> Iterator[None]:
    """The server's errors (and an unreachable database) as one-line CLI errors."""
    from ash_server.errors import AshError
    from ash_server.store.database import DatabaseUnavailable

    try:
        yield
    except (AshError, DatabaseUnavailable) as exc:
        raise CliError(exc.message) from exc


@contextlib.contextmanager
def on_server() -> Iterator[Settings]:
    """The server's settings (`server_settings`), and its errors inside the block as one-line CLI errors."""
    settings = server_settings()
    with server_errors():
        yield settings


def run_server_code(coroutine: Coroutine[Any, Any, T]) -> T:
    with server_errors():
        return asyncio.run(coroutine)


def _show_key(ctx: typer.Context, json_output: bool, tenant: str, new_key: Any, title: str) -> None:
    from ash_server.api.schemas import ApiKeyPublic

    public = ApiKeyPublic.of(new_key.key).model_dump(mode="json", by_alias=True)
    if wants_json(ctx, json_output):
        print_json({"tenantId": tenant, "apiKey": public, "key": new_key.plaintext})
        return
    out.print(title)
    key_values([("tenant", tenant), ("key id", public["id"]), ("prefix", public["prefix"])])
    out.print(f"\nAPI key (shown once, store it now):\n{escape(new_key.plaintext)}")


@admin_app.command("create-tenant")
def create_tenant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Tenant id: 1-32 of a-z, 0-9, '-', '_'.", metavar="NAME")],
    label: Annotated[str | None, typer.Option("--label", help="A description of the tenant.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a tenant and its first API key (printed once)."""
    from ash_server import tenants

    settings = server_settings()

    async def create() -> Any:
        async with tenants.admin_store(settings) as (store, auth):
            return await tenants.create_tenant(store, auth, name, label=label)

    created = run_server_code(create())
    _show_key(ctx, json_output, name, created, f"Created tenant [bold]{escape(name)}[/].")


@admin_app.command("create-key")
def create_key(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="An existing tenant.", metavar="TENANT")],
    label: Annotated[str | None, typer.Option("--label", help="What the key is for.")] = None,
    expires_at: Annotated[
        datetime | None, typer.Option("--expires-at", help="When the key stops working (UTC unless an offset).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Give an existing tenant another API key (printed once): the way back in after losing its keys."""
    from ash_server import tenants

    settings = server_settings()

    async def create() -> Any:
        async with tenants.admin_store(settings) as (store, auth):
            return await tenants.create_key(store, auth, tenant, label=label, expires_at=expires_at)

    created = run_server_code(create())
    _show_key(ctx, json_output, tenant, created, f"Created an API key for tenant [bold]{escape(tenant)}[/].")


@admin_app.command("list-tenants")
def list_tenants(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the tenants."""
    from ash_server import tenants

    settings = server_settings()

    async def listed() -> list[dict[str, Any]]:
        async with tenants.admin_store(settings) as (store, _auth):
            return [
                {"id": t.id, "label": t.label, "createdAt": t.created_at.isoformat()}
                for t in await store.list_tenants()
            ]

    rows = run_server_code(listed())
    if wants_json(ctx, json_output):
        print_json(rows)
        return
    for row in rows:
        out.print(f"{escape(row['id'])}  [dim]{escape(row['label'] or '')}  {row['createdAt'][:19]}[/]")


BackupFile = Annotated[Path, typer.Argument(help="The archive to write (tar.gz, mode 0600).", metavar="FILE")]
RestoreFile = Annotated[Path, typer.Argument(help="An archive written by `ash backup`.", metavar="FILE")]


def _report(
    ctx: typer.Context,
    json_output: bool,
    summary: Any,
    record: dict[str, Any],
    headline: str,
    *,
    note: str | None = None,
) -> None:
    """A backup's or a restore's `summary`: `record` and the counts as JSON, or `headline`, the counts and `note`."""
    if wants_json(ctx, json_output):
        print_json({**record, **summary.counts})
        return
    counts = summary.counts
    out.print(headline)
    out.print(
        f"  {counts.get('agents', 0)} agents, {counts.get('sessions', 0)} sessions, {counts.get('messages', 0)} "
        f"messages, {counts.get('tenants', 0)} tenants; {summary.files} files"
    )
    if note is not None:
        err.print(note)


def backup(ctx: typer.Context, file: BackupFile, json_output: JsonOption = False) -> None:
    """Back up the server's database and data dir into one archive (the server may keep running)."""
    from ash_server import backup as backups

    with on_server() as settings:
        summary = backups.backup(settings, file)
    _report(
        ctx,
        json_output,
        summary,
        {"file": str(file), "engine": summary.engine, "revision": summary.revision},
        f"Backed up {escape(str(settings.data_dir))} ({summary.engine}) to [bold]{escape(str(file))}[/]:",
        note="[dim]Keep ASH_CREDENTIAL_KEY with it: stored credentials cannot be decrypted without it.[/]",
    )


def restore(ctx: typer.Context, file: RestoreFile, json_output: JsonOption = False) -> None:
    """Restore a backup into an empty data dir (and, for PostgreSQL, an empty database); then start the server."""
    from ash_server import backup as backups

    with on_server() as settings:
        if not file.is_file():
            raise CliError(f"no backup at {file}")
        summary = backups.restore(settings, file)
    _report(
        ctx,
        json_output,
        summary,
        {"dataDir": str(settings.data_dir), "engine": summary.engine},
        f"Restored [bold]{escape(str(file))}[/] into {escape(str(settings.data_dir))} ({summary.engine}):",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
    app.command()(backup)
    app.command()(restore)
