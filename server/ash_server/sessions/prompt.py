"""One prompt run to its end without a client: what the queue worker and eval runs do with a session.

The turn runs as any other (stored, streamed to whoever follows the session); this reads its frames as a subscriber
would and sums them up. Callers own the session: they create, resume or end it, through `PromptSessions`: this
server's own sessions (`LocalSessions`), or on a coordinator its runners' (cluster/prompts.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from .service import SessionService, TurnOptions

# How long one wait for the next frames may take before the subscription is asked again (not a turn time limit).
POLL_S = 30.0


@dataclass(slots=True)
class PromptOutcome:
    """What one turn came to: the SDK's `result` text, the assistant's text, and the first error, if any."""

    session_id: uuid.UUID
    result: str | None = None
    text: str = ""
    error: str | None = None
    num_turns: int | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answer(self) -> str:
        """The final answer: the SDK's result when it gave one, else the streamed assistant text."""
        return self.result if self.result is not None else self.text


class PromptSessions(Protocol):
    """The session operations a client-less prompt needs."""

    async def open(self, tenant_id: str, agent_name: str) -> uuid.UUID:
        """A new session of the agent, with the default configuration."""
        ...

    async def status(self, tenant_id: str, session_id: uuid.UUID) -> str: ...

    async def resume(self, tenant_id: str, session_id: uuid.UUID) -> None: ...

    async def prompt(self, tenant_id: str, session_id: uuid.UUID, content: str) -> PromptOutcome:
        """Run one turn to its end (`run_prompt`)."""
        ...

    async def end(self, tenant_id: str, session_id: uuid.UUID) -> None: ...


class LocalSessions:
    """`PromptSessions` on this server's own sandboxes."""

    def __init__(self, sessions: SessionService) -> None:
        self._sessions = sessions

    async def open(self, tenant_id: str, agent_name: str) -> uuid.UUID:
        return (await self._sessions.create(tenant_id, agent_name, {})).id

    async def status(self, tenant_id: str, session_id: uuid.UUID) -> str:
        return (await self._sessions.get(tenant_id, session_id)).status

    async def resume(self, tenant_id: str, session_id: uuid.UUID) -> None:
        await self._sessions.resume(tenant_id, session_id)

    async def prompt(self, tenant_id: str, session_id: uuid.UUID, content: str) -> PromptOutcome:
        return await run_prompt(self._sessions, tenant_id, session_id, content)

    async def end(self, tenant_id: str, session_id: uuid.UUID) -> None:
        await self._sessions.end(tenant_id, session_id)


async def run_prompt(
    sessions: SessionService,
    tenant_id: str,
    session_id: uuid.UUID,
    content: str | list[dict[str, Any]],
    options: TurnOptions | None = None,
) -> PromptOutcome:
    """Send `content` to an active session and wait for its turn to end. Raises what `send` raises (the session
    is not active, a turn is already running, no sandbox could start)."""
    turn = await sessions.send(tenant_id, session_id, content, options or TurnOptions())
    subscription = await sessions.subscribe(
        tenant_id, session_id, after=turn.first_seq - 1, include_partial=False, turn=turn
    )
    outcome = PromptOutcome(session_id=session_id)
    try:
        while not subscription.done:
            for frame in await subscription.next_frames(POLL_S):
                take_frame(outcome, frame.event, frame.data)
    finally:
        subscription.close()
    return outcome


def take_frame(outcome: PromptOutcome, event: str, data: Any) -> None:
    """Add one stream event (its name and decoded data) to what the turn came to."""
    if not isinstance(data, dict):
        return
    if event == "message":
        outcome.messages.append(data)
        if data.get("type") == "assistant":
            for block in (data.get("message") or {}).get("content") or []:
                if isinstance(block, dict) and block.get("type") == "text":
                    outcome.text += str(block.get("text", ""))
    elif event == "turn_complete":
        outcome.num_turns = data.get("numTurns")
        result = data.get("result")
        outcome.result = result if isinstance(result, str) else outcome.result
    elif event == "error" and outcome.error is None:
        outcome.error = str(data.get("error") or "the turn failed")
