"""A session's sandbox from the outside: `session fork`, `session files` (list, fetch) and `session exec`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..context import JsonOption, session_id, state, wants_json
from ..output import err, new_table, out, print_json, timestamp
from .sessions import SessionArg, session_app

__all__ = ["register"]


def fork(ctx: typer.Context, session: SessionArg, json_output: JsonOption = False) -> None:
    """Copy a session (workspace, conversation, history) into a new paused one; prints the new id."""
    with state(ctx).client() as client:
        forked = client.fork_session(session_id(session))
    if wants_json(ctx, json_output):
        print_json(forked)
        return
    out.print(forked["id"])
    err.print(
        f"[dim]forked from {forked.get('parentSessionId') or session} · {forked['status']} · "
        f'continue with: ash session send {forked["id"]} "..."[/]'
    )


def files(
    ctx: typer.Context,
    session: SessionArg,
    path: Annotated[
        str | None, typer.Argument(help="A file to fetch (relative to the workspace); none lists them.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="With PATH: write the file here instead of stdout.")
    ] = None,
    hidden: Annotated[bool, typer.Option("--hidden/--no-hidden", help="List dotfiles, caches, venvs too.")] = True,
    json_output: JsonOption = False,
) -> None:
    """List a session's workspace files, or fetch one (to stdout, or -o FILE)."""
    sid = session_id(session)
    with state(ctx).client() as client:
        if path is None:
            listing = client.list_files(sid, include_hidden=hidden)
        else:
            data = client.read_file(sid, path)
    if path is not None:
        if output is not None:
            output.write_bytes(data)
            err.print(f"[dim]wrote {len(data)} bytes to {escape(str(output))}[/]")
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return
    if wants_json(ctx, json_output):
        print_json(listing)
        return
    entries = listing.get("files", [])
    if not entries:
        out.print("[dim]No files.[/]")
    else:
        table = new_table(["PATH", "SIZE", "MODIFIED (UTC)"])
        for entry in entries:
            table.add_row(escape(entry["path"]), str(entry["size"]), timestamp(entry.get("modifiedAt")))
        out.print(table)
    where = "the live sandbox" if listing.get("source") == "sandbox" else "the latest snapshot"
    err.print(f"[dim]{len(entries)} file{'s' if len(entries) != 1 else ''}, from {where}[/]")


def exec_command(
    ctx: typer.Context,
    session: SessionArg,
    command: Annotated[list[str], typer.Argument(help="The command (run with bash -c; quote it or use --).")],
    timeout: Annotated[
        float | None, typer.Option("--timeout", "-t", min=0.001, help="Seconds (server default 30).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a command in the session's sandbox (as its agent would); print its output, exit with its exit code."""
    sid = session_id(session)
    with state(ctx).client() as client:
        result = client.exec(sid, " ".join(command), timeout_ms=None if timeout is None else int(timeout * 1000))
    if wants_json(ctx, json_output):
        print_json(result)
    else:
        sys.stdout.write(result.get("stdout", ""))
        sys.stdout.flush()
        sys.stderr.write(result.get("stderr", ""))
        sys.stderr.flush()
        if result.get("timedOut"):
            err.print(f"[yellow]the command timed out (exit code {result['exitCode']})[/]")
        if result.get("truncated"):
            err.print("[yellow]its output was longer than 1 MiB and was cut[/]")
    code = int(result.get("exitCode", 1))
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Onto `ash session` (the sub-app `sessions.register` adds to `app`)."""
    session_app.command("fork")(fork)
    session_app.command("files")(files)
    session_app.command("exec")(exec_command)
