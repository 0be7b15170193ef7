"""Agents: `deploy` a folder, and `agent list | info | delete | versions | activate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from ..bundle import collect, validate_name
from ..client import AshClient
from ..context import JsonOption, show, state, wants_json
from ..output import agent_details, agent_table, out, print_json, version_table

__all__ = ["agent_app", "register"]

T = TypeVar("T")

NameArg = Annotated[str, typer.Argument(help="Agent name.", metavar="NAME")]

agent_app = typer.Typer(help="List, inspect and delete deployed agents.", no_args_is_help=True)


def deploy(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The agent folder; it must contain CLAUDE.md.", metavar="FOLDER")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Agent name (default: the folder's name).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Upload an agent folder to the server; re-deploying a name bumps its version."""
    agent_name = validate_name(name or folder.resolve().name)
    files = collect(folder)
    with state(ctx).client() as client:
        agent = client.deploy_agent(agent_name, files)
    if wants_json(ctx, json_output):
        print_json(agent)
        return
    size = sum(len(data) for _, data in files)
    out.print(
        f"Deployed [bold]{escape(agent['name'])}[/] version {agent['version']} "
        f"[dim]({len(files)} file{'s' if len(files) != 1 else ''}, {size} bytes)[/]"
    )


@agent_app.command("list")
def list_agents(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the agents of this API key's tenant."""
    with state(ctx).client() as client:
        agents = client.list_agents()
    show(ctx, json_output, agents, agent_table)


def _show_agent(
    ctx: typer.Context, json_output: bool, name: str, get: Callable[[AshClient, str], T], render: Callable[[T], None]
) -> None:
    """What `get` reads of the agent `name` (its details, its versions), shown."""
    with state(ctx).client() as client:
        value = get(client, name)
    show(ctx, json_output, value, render)


@agent_app.command("info")
def info(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Show one agent."""
    _show_agent(ctx, json_output, name, AshClient.get_agent, agent_details)


@agent_app.command("delete")
def delete(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Delete an agent."""
    with state(ctx).client() as client:
        client.delete_agent(name)
    if wants_json(ctx, json_output):
        print_json({"ok": True, "name": name})
    else:
        out.print(f"Deleted agent [bold]{escape(name)}[/].")


@agent_app.command("versions")
def versions(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """List an agent's versions, newest first; every deploy is one."""
    _show_agent(ctx, json_output, name, AshClient.list_agent_versions, version_table)


@agent_app.command("activate")
def activate(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version number (or id) to run.", metavar="VERSION")],
    json_output: JsonOption = False,
) -> None:
    """Make a version the one new sessions run: an older one rolls back. Running sessions keep theirs."""
    with state(ctx).client() as client:
        number = client.activate_agent_version(name, version)
    if wants_json(ctx, json_output):
        print_json({"activated": True, "name": name, "versionNumber": number})
    else:
        out.print(f"Agent [bold]{escape(name)}[/] now runs version {number}.")


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.add_typer(agent_app, name="agent")
