"""Sessions: `chat` (one message, or interactive), and `session create | send | list | get | pause | resume | stop |
end | tail | messages` (fork, files and exec are in workspace.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape

from ..client import AshClient
from ..config import config_path
from ..context import JsonOption, session_id, show, state, wants_json
from ..errors import CliError, ConnectionFailed
from ..interactive import HELP, HISTORY_FILE, Conversation
from ..models import Session
from ..output import err, out, print_json, session_details, session_table
from ..render import TurnPrinter, print_history_message

__all__ = ["register", "session_app"]

session_app = typer.Typer(help="Create, message, inspect and control sessions.", no_args_is_help=True)

MessageArg = Annotated[str, typer.Argument(help="The message; `-` reads it from stdin.", metavar="MESSAGE")]
AgentArg = Annotated[str, typer.Argument(help="Agent name.", metavar="AGENT")]
SessionArg = Annotated[str, typer.Argument(help="Session id.", metavar="SESSION_ID")]


def _message(text: str) -> str:
    message = sys.stdin.read() if text == "-" else text
    if not message.strip():
        raise CliError("the message is empty")
    return message


def _stream(client: AshClient, session_id: str, message: str) -> None:
    """Print the turn as it streams; exit 1 if it reported an error. Ctrl-C leaves the turn running on the server."""
    printer = TurnPrinter(out, err)
    try:
        for event, data in client.send_message_stream(session_id, message, include_partial=True):
            printer.handle(event, data)
    except KeyboardInterrupt:
        printer.finish()
        err.print(f"[dim]Stopped listening; the turn goes on in session {session_id}.[/]")
        raise typer.Exit(130) from None
    printer.finish()
    err.print(f'[dim]session {session_id} · continue with: ash session send {session_id} "..."[/]')
    if printer.failed:
        raise typer.Exit(1)


def chat(
    ctx: typer.Context,
    agent: AgentArg,
    message: Annotated[
        str | None,
        typer.Argument(help="The message; `-` reads it from stdin; none opens an interactive chat.", metavar="MESSAGE"),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model for this session.")] = None,
    continue_session: Annotated[
        str | None,
        typer.Option(
            "--session-id", "-s", help="Continue this session instead of starting one (as the reference CLI)."
        ),
    ] = None,
    end: Annotated[bool, typer.Option("--end", help="End the session after the answer.")] = False,
) -> None:
    """Chat with an agent: one message and its streamed answer, or (no message) an interactive conversation.

    A new session each time, or continue one with -s."""
    if message is None and sys.stdin.isatty():
        _interactive(ctx, agent, model, continue_session)
        return
    # Piped into, with no message: what comes in is the one message (`git diff | ash chat reviewer`).
    text = _message("-" if message is None else message)
    with state(ctx).client() as client:
        if continue_session is not None:
            _stream(client, session_id(continue_session), text)
            return
        if err.is_terminal:
            with err.status(f"Starting a session with {escape(agent)}…"):
                session = client.create_session(agent, model=model)
        else:
            session = client.create_session(agent, model=model)
        try:
            _stream(client, session["id"], text)
        finally:
            if end:
                client.end_session(session["id"])


def _interactive(ctx: typer.Context, agent: str, model: str | None, continue_session: str | None) -> None:
    st = state(ctx)
    with st.client() as client:
        if continue_session is not None:
            sid = session_id(continue_session)
            client.get_session(sid)  # a wrong id fails now, not at the first message
        elif err.is_terminal:
            with err.status(f"Starting a session with {escape(agent)}…"):
                sid = client.create_session(agent, model=model)["id"]
        else:
            sid = client.create_session(agent, model=model)["id"]
        err.print(f"[bold]{escape(agent)}[/] · session {sid}")
        err.print(f"[dim]{escape(HELP)}[/]")
        conversation = Conversation(client, st.client, sid, out, err)
        try:
            conversation.run(config_path().parent / HISTORY_FILE)
        finally:
            err.print(f"[dim]session {sid} · resume with: ash chat {escape(agent)} -s {sid}[/]")


@session_app.command("create")
def create(
    ctx: typer.Context,
    agent: AgentArg,
    model: Annotated[str | None, typer.Option("--model", help="Model for this session.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a session; prints its id."""
    with state(ctx).client() as client:
        session = client.create_session(agent, model=model)
    if wants_json(ctx, json_output):
        print_json(session)
        return
    out.print(session["id"])
    err.print(f"[dim]{escape(session['agentName'])} · {session['status']}[/]")


@session_app.command("send")
def send(ctx: typer.Context, session: SessionArg, message: MessageArg) -> None:
    """Send a message to a session and stream the answer."""
    sid, text = session_id(session), _message(message)
    with state(ctx).client() as client:
        _stream(client, sid, text)


@session_app.command("list")
def list_sessions(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only sessions of this agent.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="starting, active, paused, stopped, ended or error.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = None,
    offset: Annotated[int | None, typer.Option("--offset", min=0, help="Skip this many.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List sessions, newest first."""
    with state(ctx).client() as client:
        sessions = client.list_sessions(agent=agent, status=status, limit=limit, offset=offset)
    show(ctx, json_output, sessions, session_table)


@session_app.command("get")
def get(ctx: typer.Context, session: SessionArg, json_output: JsonOption = False) -> None:
    """Show one session."""
    sid = session_id(session)
    with state(ctx).client() as client:
        found = client.get_session(sid)
    show(ctx, json_output, found, session_details)


def _lifecycle(verb: str, call: Callable[[AshClient, str], Session], doc: str) -> None:
    def command(ctx: typer.Context, session: SessionArg, json_output: JsonOption = False) -> None:
        sid = session_id(session)
        with state(ctx).client() as client:
            changed = call(client, sid)
        if wants_json(ctx, json_output):
            print_json(changed)
        else:
            out.print(f"Session {changed['id']}: [bold]{escape(changed['status'])}[/]")

    command.__doc__ = doc
    session_app.command(verb)(command)


_lifecycle("pause", AshClient.pause_session, "Pause a session (its sandbox may be reclaimed; resume continues).")
_lifecycle("resume", AshClient.resume_session, "Resume a paused or stopped session.")
_lifecycle("stop", AshClient.stop_session, "Stop a session: its sandbox is destroyed, its state kept (resumable).")
_lifecycle("end", AshClient.end_session, "End a session for good.")


@session_app.command("tail")
def tail(ctx: typer.Context, session: SessionArg) -> None:
    """Follow a session's live events: the running (or latest) turn, then every later one. Ctrl-C stops."""
    sid = session_id(session)
    last_id: str | None = None
    with state(ctx).client() as client:
        while True:
            printer = TurnPrinter(out, err)
            try:
                for event, data, frame_id in client.follow_session(sid, last_event_id=last_id):
                    printer.handle(event, data)
                    last_id = frame_id or last_id
                    if event == "done":
                        printer.finish()
                        printer = TurnPrinter(out, err)
                return  # the server closed the stream
            except KeyboardInterrupt:
                printer.finish()
                raise typer.Exit(0) from None
            except ConnectionFailed:
                # Lost the connection: re-attach where we were (the server replays what we missed).
                printer.finish()
                err.print("[dim]connection lost; re-attaching…[/]")
                time.sleep(1)


@session_app.command("messages")
def messages(
    ctx: typer.Context,
    session: SessionArg,
    limit: Annotated[int | None, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = None,
    after: Annotated[int | None, typer.Option("--after", min=0, help="Only messages after this sequence.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Print a session's stored messages."""
    sid = session_id(session)
    with state(ctx).client() as client:
        history = client.list_messages(sid, limit=limit, after=after)
    if wants_json(ctx, json_output):
        print_json(history)
        return
    if not history:
        out.print("[dim]No messages.[/]")
    for item in history:
        print_history_message(out, item["role"], item["content"])


def register(app: typer.Typer) -> None:
    app.command()(chat)
    app.add_typer(session_app, name="session")
