"""Every state and mode of the server, in one place: what a session, a sandbox, a server, a permission mode and a
sandbox network can be. `StrEnum`s, so they are their wire values (the API and the database store the same strings
as before) and OpenAPI lists them.

A session moves between its states only along `SESSION_TRANSITIONS` (the session service checks every change;
docs/architecture/session-lifecycle.md draws it).
"""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"
    ENDED = "ended"
    ERROR = "error"

    @property
    def resumable(self) -> bool:
        """`resume` brings a session in this state back to `active`."""
        return self in (SessionStatus.PAUSED, SessionStatus.STOPPED, SessionStatus.ERROR)


_ANY_LIVE = frozenset(
    {SessionStatus.ACTIVE, SessionStatus.ERROR, SessionStatus.PAUSED, SessionStatus.STOPPED, SessionStatus.ENDED}
)
SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    # starting: its first sandbox is on its way (a restart or shutdown meanwhile leaves it paused).
    SessionStatus.STARTING: _ANY_LIVE,
    SessionStatus.ACTIVE: _ANY_LIVE,
    # paused: resume (warm or cold), or a cold start that fails; a pause of a paused session changes nothing.
    SessionStatus.PAUSED: _ANY_LIVE - {SessionStatus.PAUSED},
    # stopped: no sandbox; pause is a no-op, stop again rewrites it.
    SessionStatus.STOPPED: _ANY_LIVE - {SessionStatus.PAUSED},
    SessionStatus.ERROR: _ANY_LIVE,
    SessionStatus.ENDED: frozenset(),
}


class InvalidTransition(Exception):
    """A change of status the state machine does not have: a bug, never a client's doing."""


def check_transition(current: str, new: str) -> None:
    if SessionStatus(new) not in SESSION_TRANSITIONS[SessionStatus(current)]:
        raise InvalidTransition(f"a session cannot go from {current} to {new}")


class SandboxState(StrEnum):
    """A sandbox in the pool (and its row). `cold`: a session's sandbox is gone, its files persisted."""

    COLD = "cold"
    WARMING = "warming"
    WARM = "warm"
    WAITING = "waiting"
    RUNNING = "running"


# Not yet given to a session: the warm pool's.
UNCLAIMED = (SandboxState.WARMING, SandboxState.WARM)


class ServerMode(StrEnum):
    STANDALONE = "standalone"
    COORDINATOR = "coordinator"
    RUNNER = "runner"


class PermissionMode(StrEnum):
    """The SDK's permission modes, and the reference's `permissionsByAgent` (the agent's settings decide: the SDK's
    `default`)."""

    DEFAULT = "default"
    ACCEPT_EDITS = "acceptEdits"
    PLAN = "plan"
    BYPASS_PERMISSIONS = "bypassPermissions"
    DONT_ASK = "dontAsk"
    PERMISSIONS_BY_AGENT = "permissionsByAgent"


class NetworkMode(StrEnum):
    NONE = "none"
    ALLOWLIST = "allowlist"
    FULL = "full"


class NetworkCeiling(StrEnum):
    """The most network an operator lets a tenant's agents have (ASH_NETWORK_CEILINGS), from least to most."""

    NONE = "none"
    # Allowlists of public destinations: names resolving to non-public addresses are refused, as are literals.
    PUBLIC = "public"
    # Allowlists that may name loopback, private or link-local addresses literally (`localhost:8080`, `10.0.0.5`).
    PRIVATE = "private"
    # "full": the host's network, unfiltered (the API port, every host listener, the cloud metadata endpoint).
    FULL = "full"

    @property
    def rank(self) -> int:
        return list(NetworkCeiling).index(self)
