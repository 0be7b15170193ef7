"""`ash queue`: prompts enqueued for an agent or a session, run by the server's queue worker."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from ..context import JsonOption, show, state, wants_json
from ..output import new_table, out, print_json, timestamp

__all__ = ["register"]

STATUS_STYLE = {"pending": "yellow", "processing": "cyan", "completed": "green", "failed": "red", "cancelled": "dim"}

queue_app = typer.Typer(help="Enqueue prompts and follow them.", no_args_is_help=True)


def _show(ctx: typer.Context, json_output: bool, item: dict[str, Any]) -> None:
    if wants_json(ctx, json_output):
        print_json(item)
        return
    style = STATUS_STYLE.get(item["status"], "")
    out.print(f"{item['id']}  [{style}]{item['status']}[/]  agent {escape(item['agentName'])}")
    for label, key in (("session", "sessionId"), ("error", "error"), ("result", "result")):
        if item.get(key):
            out.print(f"  {label}: {escape(str(item[key]))}")


@queue_app.command("add")
def add(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt to run.")],
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Run in a new session of this agent.")] = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Run in this session.")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    max_retries: Annotated[int, typer.Option("--max-retries", help="Attempts in all.")] = 3,
    key: Annotated[str | None, typer.Option("--idempotency-key", help="Enqueue once per key.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Enqueue PROMPT for an agent (--agent) or an existing session (--session)."""
    body: dict[str, Any] = {"prompt": prompt, "priority": priority, "maxRetries": max_retries}
    for name, value in (("agentName", agent), ("sessionId", session), ("idempotencyKey", key)):
        if value is not None:
            body[name] = value
    with state(ctx).client() as client:
        _show(ctx, json_output, client.queue("POST", json=body))


@queue_app.command("list")
def list_items(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending, processing, completed, failed or cancelled.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    json_output: JsonOption = False,
) -> None:
    """List queue items, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    with state(ctx).client() as client:
        items: list[dict[str, Any]] = client.queue("GET", field="items", params=params)
    show(ctx, json_output, items, _item_table)


def _item_table(items: list[dict[str, Any]]) -> None:
    if not items:
        out.print("[dim]No queue items.[/]")
        return
    drawn = new_table(["ID", "STATUS", "AGENT", "TRIES", "CREATED (UTC)", "PROMPT"], wrap=["PROMPT"])
    for i in items:
        style = STATUS_STYLE.get(i["status"], "")
        drawn.add_row(
            i["id"],
            f"[{style}]{i['status']}[/]",
            escape(i["agentName"]),
            f"{i['retryCount']}/{i['maxRetries']}",
            timestamp(i["createdAt"]),
            escape(i["prompt"][:60]),
        )
    out.print(drawn)


@queue_app.command("get")
def get(ctx: typer.Context, item_id: str, json_output: JsonOption = False) -> None:
    """Show one queue item, with its result or error."""
    with state(ctx).client() as client:
        _show(ctx, json_output, client.queue("GET", f"/{item_id}"))


@queue_app.command("cancel")
def cancel(ctx: typer.Context, item_id: str, json_output: JsonOption = False) -> None:
    """Cancel a pending queue item."""
    with state(ctx).client() as client:
        _show(ctx, json_output, client.queue("DELETE", f"/{item_id}"))


@queue_app.command("stats")
def stats(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Count queue items by status."""
    with state(ctx).client() as client:
        counts: dict[str, int] = client.queue("GET", "/stats", field="stats")
    if wants_json(ctx, json_output):
        print_json(counts)
        return
    for name, count in counts.items():
        out.print(f"{name:<11} {count}")


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")
