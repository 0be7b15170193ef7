"""The turns the CLI runs on its own in a session's sandbox, stored as the session's.

When a background task ends (a Bash call with `run_in_background`, or one that outlived the Bash timeout), the CLI
tells the model in a turn nobody sent. Its messages answer no message of the session, so no turn's stream carries
them: the bridge sends them as `background` events to one `listen` request per sandbox, made when the session gets
the sandbox, and they are stored like a turn's (its SDK messages unchanged, their timeline events marked
`"background": true`), in the order they came, between the turns of the messages sent.
"""

from __future__ import annotations

import logging

from ash_bridge.protocol import Command

from ..errors import AshError
from ..sandbox.sandbox import Sandbox
from ..store.models import SessionRow
from ..store.repository import Store
from .events import dumps, message_role, timeline_events

log = logging.getLogger(__name__)


async def record_background(store: Store, session: SessionRow, sandbox: Sandbox) -> None:
    """Store what the CLI does on its own in `sandbox` as `session`'s, until the sandbox ends."""
    try:
        async for event in sandbox.request(Command(cmd="listen", id=f"listen-{sandbox.id}")):
            message = event.message
            if event.event != "background" or message is None:
                continue  # the sandbox ended (its error and done)
            role = message_role(message)
            if role is None:
                continue  # partial deltas: the stored messages hold the whole text
            events = [(kind, dumps({**data, "background": True})) for kind, data in timeline_events(message)]
            try:
                await store.record_message(session, role, dumps(message), events)
            except Exception:  # the reading goes on: a listener that stops would hold the sandbox's turns back
                log.exception("session %s: storing a message of the CLI's own turn failed", session.id)
    except AshError as exc:
        log.debug("session %s: sandbox %s takes no listener: %s", session.id, sandbox.id, exc.message)
