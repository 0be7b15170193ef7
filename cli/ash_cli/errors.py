"""What can go wrong: talking to an Ash server (one class per HTTP status, plus connection and protocol errors,
modelled on anthropic-sdk-python), and `CliError` for problems the CLI finds itself (a folder without CLAUDE.md).

Standard library only, so the client never needs the server's dependencies.
"""

from __future__ import annotations

__all__ = [
    "AshClientError",
    "AuthenticationError",
    "BadRequestError",
    "CliError",
    "ConflictError",
    "ConnectionFailed",
    "ConnectionLost",
    "GoneError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProtocolError",
    "RequestTimedOut",
    "ServerError",
    "ServiceUnavailableError",
    "StatusError",
    "status_error",
]


class AshClientError(Exception):
    """Base of every client error. `status_code` is None when no HTTP response arrived."""

    status_code: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectionFailed(AshClientError):
    """No usable connection to the server at `url`. Exactly this class: it could not be reached at all."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class RequestTimedOut(ConnectionFailed):
    """The server accepted the connection but did not answer in time."""


class ConnectionLost(ConnectionFailed):
    """The connection broke after it was made (the server went away mid-request or mid-stream)."""


class ProtocolError(AshClientError):
    """The server answered something that is not the Ash wire format (bad JSON, a malformed SSE frame)."""


class StatusError(AshClientError):
    """The server answered with an HTTP error; `message` is the `error` field of its `{error, statusCode}` body."""

    status_code: int

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class BadRequestError(StatusError):
    """400: the request was invalid (validation, or the session is not active)."""


class AuthenticationError(StatusError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(StatusError):
    """403."""


class NotFoundError(StatusError):
    """404: no such agent, session or file (for this tenant)."""


class ConflictError(StatusError):
    """409: for example a turn is already running in the session."""


class GoneError(StatusError):
    """410: the session has ended."""


class PayloadTooLargeError(StatusError):
    """413: the message or upload is over the server's limit."""


class ServerError(StatusError):
    """5xx: the server failed; a 500 is a server bug."""


class ServiceUnavailableError(ServerError):
    """503: no sandbox capacity, or a sandbox could not start."""


class CliError(Exception):
    """A problem found by the CLI itself, reported as one line on stderr with exit code 1."""


_BY_STATUS: dict[int, type[StatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    503: ServiceUnavailableError,
}


def status_error(status_code: int, message: str) -> StatusError:
    """The error class for an HTTP status: the exact class when there is one, else by range."""
    cls = _BY_STATUS.get(status_code) or (ServerError if status_code >= 500 else StatusError)
    return cls(message, status_code=status_code)
