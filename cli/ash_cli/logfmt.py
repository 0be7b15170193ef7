"""The server's log lines for people: `2026-12-04 04:02:39 INFO  message  session=…`, from its JSON lines.

The server writes one JSON object per line (observability/logs.py); anything else in the log (a traceback printed
before logging was configured, a line of `ASH_LOG_FORMAT=text`) is shown as it is, less its terminal escapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from rich.text import Text

__all__ = ["human_line", "log_record", "strip_ansi"]

# CSI sequences (colours, cursor moves): uvicorn and tracebacks may carry them; a file or pipe must not.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LEVEL_STYLE = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}
# Context fields worth a glance; the rest stay in `--json`.
_CONTEXT = ("session_id", "sandbox_id", "request_id")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def log_record(line: str) -> Mapping[str, object] | None:
    """One JSON log line as its object, or None for a line that is not one."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "message" in record else None


def human_line(line: str) -> Text:
    """One log line as a person reads it: time (to the second), level, message, context, exception below."""
    record = log_record(line.rstrip("\n"))
    if record is None:
        return Text(strip_ansi(line.rstrip("\n")))
    level = str(record.get("level", ""))
    when = str(record.get("ts", ""))[:19]  # `2026-12-04 04:02:39,454`: the milliseconds are in --json
    text = Text()
    text.append(f"{when} ", style="dim")
    text.append(f"{level:<7} ", style=_LEVEL_STYLE.get(level, ""))
    text.append(strip_ansi(str(record["message"])))
    context = [f"{name.removesuffix('_id')}={record[name]}" for name in _CONTEXT if record.get(name)]
    if context:
        text.append("  " + " ".join(context), style="dim")
    trace = record.get("exc_info")
    if isinstance(trace, str) and trace:
        text.append("\n" + strip_ansi(trace), style="red")
    return text
