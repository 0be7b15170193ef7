"""The server's error hierarchy. api/errors.py renders every one of them as `{error, statusCode}`."""

from __future__ import annotations

import errno
from typing import Any

# SQLite's SQLITE_FULL text, and PostgreSQL's disk_full SQLSTATE (asyncpg's DiskFullError carries it).
_SQLITE_FULL = "database or disk is full"
_PG_DISK_FULL = "53100"


class AshError(Exception):
    status_code = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the error response carries (Retry-After for 429)."""
        return {}


class Invalid(AshError):
    status_code = 400


class Unauthorized(AshError):
    status_code = 401


class Forbidden(AshError):
    """Authenticated, but this tenant may not do this on this server (an operator's setting says so)."""

    status_code = 403


class NotFound(AshError):
    status_code = 404


class Conflict(AshError):
    status_code = 409


class Gone(AshError):
    status_code = 410


class SessionMoved(Conflict):
    """A runner was asked for a session another runner runs now (the coordinator routes again on the header)."""

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Ash-Session-Moved": str(self.fields.get("runner_id", ""))}


class PayloadTooLarge(AshError):
    status_code = 413


class UnsupportedMediaType(AshError):
    status_code = 415


class RetryLater(AshError):
    """An error that says when to try again: a Retry-After header (seconds)."""

    def __init__(self, message: str, *, retry_after_s: int, **fields: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **fields)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RateLimited(RetryLater):
    """Too many requests of one kind from one API key (or failed sign-ins from one client IP)."""

    status_code = 429


class CapacityExhausted(AshError):
    status_code = 503


class StartsBusy(CapacityExhausted, RetryLater):
    """Too many sandbox starts are queued ahead of this one (sandbox/admission.py); Retry-After says when to retry."""


class NotConfigured(AshError):
    """A feature needs server configuration that is missing; the message names the setting."""

    status_code = 503


class SandboxError(AshError):
    """A sandbox could not be started or died. The session stays resumable."""

    status_code = 503


class SnapshotError(AshError):
    """A session's snapshot could not be taken or restored (store unreachable, object missing or damaged). The
    session is left as it was: resumable from the files that exist."""

    status_code = 503


class BridgeError(AshError):
    """The bridge broke the protocol or went away mid-turn."""

    status_code = 502


class InsufficientStorage(AshError):
    """The disk (of the data dir or the database) is full: the request changed nothing; free space and retry."""

    status_code = 507


DISK_FULL_MESSAGE = "the server's disk is full: nothing of this request was stored; retry once space is freed"


def out_of_space(exc: BaseException) -> bool:
    """Whether the disk being full is what raised `exc`, wherever in its chain (a driver error wrapped by
    SQLAlchemy, an OSError under a copy)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _SQLITE_FULL in str(current) or getattr(current, "sqlstate", None) == _PG_DISK_FULL:
            return True
        current = current.__cause__ or current.__context__ or getattr(current, "orig", None)
    return False
