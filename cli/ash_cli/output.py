"""How the CLI prints: Rich consoles for people, plain JSON for scripts (`--json`), one-line errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .models import Agent, AgentVersion, Health, Session

__all__ = [
    "agent_details",
    "agent_table",
    "err",
    "error",
    "health_details",
    "key_values",
    "out",
    "print_json",
    "session_details",
    "session_table",
    "timestamp",
    "version_table",
]


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is not cut to 80 columns: ids and timestamps must survive `| grep`.
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, soft_wrap=True, highlight=False, emoji=False, width=wide)


out = _console(stderr=False)
err = _console(stderr=True)


def error(message: str) -> None:
    """The one line a failing command prints."""
    err.print(f"[bold red]Error:[/] {escape(message)}")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def timestamp(value: object) -> str:
    """`2025-01-02T03:04:05.678901Z` → `2025-01-02 03:04:05` (UTC): tables show seconds, --json shows all."""
    if not isinstance(value, str) or not value:
        return "-"
    text = value.replace("T", " ")
    return text[:19]


def key_values(rows: Iterable[tuple[str, object]], *, title: str | None = None) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, escape("-" if value is None or value == "" else str(value)))
    if title:
        out.print(f"[bold]{escape(title)}[/]")
    out.print(grid)


def new_table(columns: Sequence[str], *, wrap: Sequence[str] = ()) -> Table:
    """A borderless table with these column headers; the columns named in `wrap` may wrap."""
    drawn = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        drawn.add_column(name, no_wrap=name not in wrap)
    return drawn


def session_table(sessions: Sequence[Session]) -> None:
    if not sessions:
        out.print("[dim]No sessions.[/]")
        return
    table = new_table(["SESSION", "AGENT", "STATUS", "CREATED (UTC)", "LAST ACTIVE (UTC)"])
    for s in sessions:
        table.add_row(
            s["id"],
            escape(s["agentName"]),
            _status(s["status"]),
            timestamp(s["createdAt"]),
            timestamp(s["lastActiveAt"]),
        )
    out.print(table)


def agent_table(agents: Sequence[Agent]) -> None:
    if not agents:
        out.print("[dim]No agents. Deploy one with `ash deploy <folder>`.[/]")
        return
    table = new_table(["AGENT", "VERSION", "UPDATED (UTC)", "ID"])
    for a in agents:
        table.add_row(escape(a["name"]), str(a["version"]), timestamp(a["updatedAt"]), a["id"])
    out.print(table)


def version_table(versions: Sequence[AgentVersion]) -> None:
    table = new_table(["VERSION", "NAME", "ACTIVE", "FILES", "CREATED (UTC)", "NOTES"])
    for v in versions:
        table.add_row(
            str(v["versionNumber"]),
            escape(v["name"]),
            "[green]active[/]" if v["isActive"] else "",
            str(v.get("fileCount", "-")),
            timestamp(v["createdAt"]),
            escape((v.get("releaseNotes") or "").splitlines()[0] if v.get("releaseNotes") else ""),
        )
    out.print(table)


def session_details(session: Session) -> None:
    agent = session["agentName"]
    if "agentVersion" in session:
        agent += f" (version {session['agentVersion']})"
    key_values(
        [
            ("id", session["id"]),
            ("agent", agent),
            ("status", session["status"]),
            ("sandbox", session.get("sandboxId")),
            ("runner", session.get("runnerId")),
            ("parent", session.get("parentSessionId")),
            ("created", session.get("createdAt")),
            ("last active", session.get("lastActiveAt")),
        ]
    )


def agent_details(agent: Agent) -> None:
    env: Mapping[str, str] = agent.get("env") or {}
    config: Mapping[str, Any] = agent.get("config") or {}
    key_values(
        [
            ("name", agent["name"]),
            ("version", agent["version"]),
            ("id", agent["id"]),
            ("tenant", agent.get("tenantId")),
            ("path", agent.get("path")),
            ("env", ", ".join(sorted(env)) or None),
            ("config", json.dumps(config) if config else None),
            ("created", agent.get("createdAt")),
            ("updated", agent.get("updatedAt")),
        ]
    )


def health_details(health: Health, url: str) -> None:
    pool = health.get("pool") or {}
    key_values(
        [
            ("status", health.get("status")),
            ("url", url),
            ("version", health.get("version")),
            ("uptime", _duration(health.get("uptime"))),
            ("sessions", f"{health.get('activeSessions', 0)} active"),
            ("sandboxes", f"{health.get('activeSandboxes', 0)} running, capacity {pool.get('maxCapacity', '-')}"),
            ("isolation", health.get("isolation")),
            ("model key", _model_key(health.get("modelKey"))),
            ("coordinator", health.get("coordinatorId")),
        ]
    )


def _model_key(configured: object) -> str | None:
    if configured is None:  # a server from before the field
        return None
    if configured:
        return "configured (`ash health --model` checks that it works)"
    return "none: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for a proxy) for the server, or use stored credentials"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


_STATUS_STYLE = {"active": "green", "starting": "yellow", "paused": "yellow", "stopped": "dim", "ended": "dim"}


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'red')}]{escape(status)}[/]"
