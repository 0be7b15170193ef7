"""How a turn's events print: the pure part of `ash chat`, fed the events the server sends."""

from __future__ import annotations

import io
import json

from rich.console import Console

from ash_cli.logfmt import human_line
from ash_cli.render import TurnPrinter


def printer() -> tuple[TurnPrinter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return TurnPrinter(Console(file=out, width=200), Console(file=err, width=200)), out, err


def test_a_failed_mcp_server_is_a_warning_and_the_turn_goes_on() -> None:
    turn, out, err = printer()
    turn.handle("text_delta", {"delta": "Working"})
    turn.handle(
        "error", {"error": "MCP server 'notes' failed to start: ModuleNotFoundError: mcp", "code": "mcp_server_failed"}
    )
    turn.handle("text_delta", {"delta": " without it."})
    turn.finish()
    assert not turn.failed
    assert err.getvalue() == "Warning: MCP server 'notes' failed to start: ModuleNotFoundError: mcp\n"
    assert out.getvalue() == "Working\n without it.\n"


def test_any_other_error_fails_the_turn() -> None:
    turn, _, err = printer()
    turn.handle("error", {"error": "model authentication failed: invalid x-api-key", "code": "model_auth"})
    assert turn.failed
    assert err.getvalue() == "Error: model authentication failed: invalid x-api-key\n"


def test_a_log_line_for_people() -> None:
    """`ash logs`: a JSON line as time, level, message and context; its traceback below; other lines as they are."""
    record = {
        "ts": "2026-12-04 04:38:53,356",
        "level": "ERROR",
        "logger": "ash_server.sessions",
        "message": "turn failed",
        "request_id": None,
        "session_id": "0b6f",
        "sandbox_id": None,
        "exc_info": "Traceback (most recent call last):\nZeroDivisionError: division by zero",
    }
    assert human_line(json.dumps(record) + "\n").plain == (
        "2026-12-04 04:38:53 ERROR   turn failed  session=0b6f\n"
        "Traceback (most recent call last):\nZeroDivisionError: division by zero"
    )
    assert human_line("\x1b[31mplain text, coloured\x1b[0m\n").plain == "plain text, coloured"
    assert human_line('{"not": "a log record"}').plain == '{"not": "a log record"}'
