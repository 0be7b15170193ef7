"""Which turn an SDK message belongs to: the bridge's query, or a turn the CLI runs on its own.

The CLI does not only answer queries. When a background task ends (a Bash call with `run_in_background`, or one that
outlived the Bash timeout) it tells the model in a turn of its own, which ends in a `result` of its own, between or
even during the bridge's queries. The bridge sends each query with a `uuid`, and Claude Code says which messages are
that query's (measured with Claude Code 2.1.330, claude-agent-sdk 0.2.187; tests/bridge pins it):

- `command_lifecycle` messages name the query's uuid (`command_uuid`): `queued` when the CLI reads it, `started`
  when a turn takes it in (after the CLI's own turn, if one is running), `completed` or `cancelled` after its result;
- the turn's `system` init, first assistant message, stream events and `result` carry `user_message_uuid(s)`;
- the CLI's own turn has neither, its `result` has `origin: {"kind": "task-notification"}`.

So until its command has started, what the CLI says belongs to the turn it runs on its own; from then on everything
up to the next `result` is the query's (a query taken into a running turn of the CLI's makes that turn its own, and
its result then names the query). The lifecycle messages themselves go nowhere: they answer the bridge's commands,
and the SDK's own parser skips them too, so clients see the messages they saw before queries carried a uuid. Pure:
the driver acts on the answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

_COMMAND_ENDS = ("completed", "cancelled")


class Destination(enum.Enum):
    TURN = "turn"  # a message of the query's turn
    LAST = "last"  # the query's last message: its result
    END = "end"  # not forwarded, but the query's turn is over: the CLI ended its command without a result
    BACKGROUND = "background"  # a message of a turn the CLI runs on its own
    DROP = "drop"  # a command's lifecycle: the bridge's bookkeeping, no client's message


@dataclass
class Query:
    """A query sent with `uuid`, waiting for the CLI to take it in (`started`) and for its result."""

    uuid: str
    started: bool = False
    # Interrupted while it waited behind a turn the CLI runs on its own: to be interrupted again once it starts.
    interrupt_at_start: bool = False


def names(message: dict[str, Any], uuid: str) -> bool:
    """The message says it belongs to the query sent with `uuid`."""
    if message.get("type") == "command_lifecycle":
        return message.get("command_uuid") == uuid
    uuids = message.get("user_message_uuids")
    return message.get("user_message_uuid") == uuid or (isinstance(uuids, list) and uuid in uuids)


def _attributes(message: dict[str, Any]) -> bool:
    if message.get("type") == "command_lifecycle":
        return True
    return "user_message_uuid" in message or "user_message_uuids" in message


class Router:
    """Routes one connection's messages (a new CLI process, a new router)."""

    def __init__(self) -> None:
        # The CLI names queries (the bundled one does; an older one given as `cliPath` may not).
        self.attributed = False

    def route(self, message: dict[str, Any], query: Query | None) -> Destination:
        """Where `message` goes while `query` (if any) waits for its result; marks the query started."""
        self.attributed = self.attributed or _attributes(message)
        is_result = message.get("type") == "result"
        if query is not None and not self.attributed:
            return Destination.LAST if is_result else Destination.TURN  # no names: the first result ends it
        ours = query is not None and names(message, query.uuid)
        if message.get("type") == "command_lifecycle":
            state = message.get("state")
            if query is not None and ours and state != "queued":
                query.started = True  # `queued`: read, but the CLI may still be on a turn of its own
                if state in _COMMAND_ENDS:
                    return Destination.END  # should the CLI end the command without a result
            return Destination.DROP
        if query is not None and (ours or query.started):
            query.started = True
            return Destination.LAST if is_result else Destination.TURN
        return Destination.BACKGROUND
