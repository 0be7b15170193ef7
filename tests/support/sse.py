"""A small SSE reader for tests: frames with their id, event name and decoded data; comments kept apart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseFrame:
    event: str
    data: Any
    id: int | None = None


@dataclass
class SseReader:
    frames: list[SseFrame] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def feed(self, lines: Iterator[str]) -> Iterator[SseFrame]:
        event, data, frame_id = "message", None, None
        for line in lines:
            if line == "":
                if data is not None:
                    frame = SseFrame(event, json.loads(data), frame_id)
                    self.frames.append(frame)
                    yield frame
                event, data, frame_id = "message", None, None
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("retry:"):
                self.retry = int(line[6:].strip())
            elif line.startswith("id:"):
                frame_id = int(line[3:].strip())
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()


def read_all(response: httpx.Response) -> SseReader:
    reader = SseReader()
    for _ in reader.feed(response.iter_lines()):
        pass
    return reader


def events_of(body: str) -> list[tuple[str, Any]]:
    """A whole SSE body (text) as (event, decoded data) pairs."""
    return [(f.event, f.data) for f in SseReader().feed(iter(body.splitlines())) if f.event]


def turn(client: httpx.Client, session_id: str, prompt: str, **body: object) -> SseReader:
    """One message to a session, its whole stream read and parsed."""
    with client.stream("POST", f"/api/sessions/{session_id}/messages", json={"content": prompt, **body}) as response:
        assert response.status_code == 200, response.read()
        return read_all(response)


def turn_text(client: httpx.Client, session_id: str, prompt: str, *, until_done: bool = True) -> str:
    """One message to a session, its whole stream as text; with `until_done`, it must have ended with `done`."""
    with client.stream("POST", f"/api/sessions/{session_id}/messages", json={"content": prompt}) as response:
        assert response.status_code == 200, response.read()
        text = "".join(response.iter_text())
    if until_done:
        assert "event: done" in text, text[-500:]
    return text


def new_session(client: httpx.Client, agent: str, **options: Any) -> dict[str, Any]:
    response = client.post("/api/sessions", json={"agent": agent, **options})
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()["session"]
    return session
