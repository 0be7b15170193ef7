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
