"""Many machines: `ash runner` (run this machine as a runner) and `ash runners` (a coordinator's runners)."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.markup import escape

from ..context import JsonOption, show, state
from ..output import new_table, out, timestamp
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
    show(ctx, json_output, listed, _runner_table)


def _runner_table(listed: list[dict[str, Any]]) -> None:
    if not listed:
        out.print("[dim]No runners. Start one with `ash runner` (see docs/self-hosting/multi-machine.md).[/]")
        return
    drawn = new_table(["RUNNER", "STATUS", "LOAD", "RUNNING", "WARM", "URL", "LAST HEARTBEAT (UTC)"])
    for r in listed:
        style = STATUS_STYLE.get(r["status"], "")
        pool = r.get("pool") or {}
        drawn.add_row(
            escape(r["id"]),
            f"[{style}]{r['status']}[/]" if style else r["status"],
            f"{r['load']}/{r['maxSandboxes']}",
            str(pool.get("running", 0)),
            str(pool.get("warm", 0)),
            escape(r["url"]),
            timestamp(r["lastHeartbeatAt"]),
        )
    out.print(drawn)


def register(app: typer.Typer) -> None:
    app.command()(runner)
    app.command()(runners)
