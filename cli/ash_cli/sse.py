"""Server-Sent Events framing: lines in, events out (the subset of the WHATWG rules the Ash stream uses)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent", "iter_events"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Feed it one line at a time (without the line ending); a blank line completes an event.

    Comment lines (`:keepalive`) and `retry:` are ignored; `id:` is kept on the event for re-attaching; several
    `data:` lines are joined with newlines; a frame without data is dropped, as browsers do.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(event=event, data="\n".join(data), id=self._id)


def iter_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from an iterable of lines; an unterminated last frame is discarded (the stream was cut)."""
    decoder = SSEDecoder()
    for line in lines:
        event = decoder.decode(line.rstrip("\r\n"))
        if event is not None:
            yield event
