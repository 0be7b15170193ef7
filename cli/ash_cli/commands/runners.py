"""Many machines: `ash runner` (run this machine as a runner) and `ash runners` (a coordinator's runners)."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.markup import escape

from ..context import JsonOption, state, wants_json
from ..output import out, print_json, timestamp
from .server import serve

__all__ = ["register"]

STATUS_STYLE = {"live": "green", "draining": "yellow", "dead": "red"}


def runner() -> None:
    """Run this machine as a runner in the foreground: it hosts sandboxes for the coordinator at ASH_SERVER_URL
    (needs ASH_INTERNAL_SECRET and the shared ASH_DATABASE_URL; see docs/self-hosting/multi-machine.md)."""
    os.environ["ASH_MODE"] = "runner"
    serve()


def runners(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the coordinator's runners: status, load, pool and last heartbeat (an API key of the default tenant)."""
    with state(ctx).client() as client:
        listed: list[dict[str, Any]] = client.list_runners()
    if wants_json(ctx, json_output):
        print_json(listed)
        return
    if not listed:
        out.print("[dim]No runners. Start one with `ash runner` (see docs/self-hosting/multi-machine.md).[/]")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RUNNER", "STATUS", "LOAD", "RUNNING", "WARM", "URL", "LAST HEARTBEAT (UTC)"):
        table.add_column(column, no_wrap=True)
    for r in listed:
        style = STATUS_STYLE.get(r["status"], "")
        pool = r.get("pool") or {}
        table.add_row(
            escape(r["id"]),
            f"[{style}]{r['status']}[/]" if style else r["status"],
            f"{r['load']}/{r['maxSandboxes']}",
            str(pool.get("running", 0)),
            str(pool.get("warm", 0)),
            escape(r["url"]),
            timestamp(r["lastHeartbeatAt"]),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(runner)
    app.command()(runners)
