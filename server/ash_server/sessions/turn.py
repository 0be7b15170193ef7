"""A turn: one user message and everything the agent does about it, running independently of any client.

The turn's frames are published to any number of subscribers (the client that sent the message, and later
re-attached clients). A client that goes away does not stop the turn: it runs to the end and is persisted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Frame:
    event: str
    data: dict[str, Any]


class Turn:
    def __init__(self, session_id: str, *, include_partial: bool) -> None:
        self.id = "turn-" + uuid.uuid4().hex
        self.session_id = session_id
        self.include_partial = include_partial
        self.frames: list[Frame] = []
        self.finished = False
        self._new_frame = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def publish(self, event: str, data: dict[str, Any]) -> None:
        self.frames.append(Frame(event, data))
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        woken, self._new_frame = self._new_frame, asyncio.Event()
        woken.set()

    async def subscribe(self) -> AsyncIterator[Frame]:
        index = 0
        while True:
            signal = self._new_frame
            while index < len(self.frames):
                yield self.frames[index]
                index += 1
            if self.finished:
                return
            await signal.wait()
