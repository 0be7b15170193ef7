"""Structured logs: one JSON object per line, with the request, session and sandbox they belong to.

Secrets never reach a log line: known secret shapes (Ash API keys, Anthropic keys) are masked by a filter on every
handler, as a last line of defence behind not logging them in the first place. Message bodies are logged at debug
level only.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
session_id: ContextVar[str | None] = ContextVar("session_id", default=None)
sandbox_id: ContextVar[str | None] = ContextVar("sandbox_id", default=None)
# time.perf_counter() when the request reached the app (set with request_id): ASH_DEBUG_TIMING's HTTP share.
request_arrived: ContextVar[float | None] = ContextVar("request_arrived", default=None)

SECRET_PATTERNS = re.compile(r"(ash_[A-Za-z0-9_-]{16,}|sk-ant-[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9]{20,})")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ContextFilter(logging.Filter):
    """Adds the ids of the current request, session and sandbox, and masks secret-shaped strings."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self._secrets = [s for s in (secrets or []) if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.session_id = session_id.get()
        record.sandbox_id = sandbox_id.get()
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return SECRET_PATTERNS.sub("***", text)


class LossReportingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that says when it lost records: a log on a full disk (`ash start` writes it to the data
    dir) fails silently otherwise, and the log looks complete. Lost records are counted; the next record that can
    be written is preceded by one saying how many were lost and why."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0
        self._last_error = ""

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost += 1
        error = sys.exc_info()[1]
        self._last_error = f"{type(error).__name__}: {error}" if error is not None else "unknown error"

    def emit(self, record: logging.LogRecord) -> None:
        if self.lost:
            lost, self.lost = self.lost, 0
            report = logging.LogRecord(
                __name__,
                logging.ERROR,
                __file__,
                0,
                "%d log records could not be written (%s)",
                (lost, self._last_error),
                None,
            )
            self.filter(report)  # the context fields the formatter expects
            super().emit(report)
            if self.lost:  # the report itself could not be written either
                self.lost += lost
                return
        super().emit(record)


def configure_logging(level: str, fmt: str = "json", secrets: list[str] | None = None) -> None:
    handler = LossReportingHandler()
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(session_id)s %(sandbox_id)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO: one line per model call through the gateway. Keep that for debug.
    if level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)
