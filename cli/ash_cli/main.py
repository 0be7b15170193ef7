"""The `ash` application: global options, the commands of each module, and one-line errors."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .commands import admin, agents, queue, runners, server, sessions, workspace
from .context import State, explain, print_version
from .errors import AshClientError, CliError
from .output import error

__all__ = ["app"]


class App(typer.Typer):
    """A Typer app that reports expected failures as one line on stderr with exit code 1, never a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (AshClientError, CliError, OSError) as exc:
            error(explain(exc))
            sys.exit(1)


app = App(
    name="ash",
    help="Deploy Claude-powered agents and talk to them. Run `ash start`, then `ash deploy <folder>`.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Locals would include the API key.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of tables (list/get commands).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=print_version, is_eager=True)
    ] = False,
) -> None:
    ctx.obj = State(json=json_output)


server.register(app)
agents.register(app)
sessions.register(app)
workspace.register(app)
admin.register(app)
runners.register(app)
queue.register(app)
