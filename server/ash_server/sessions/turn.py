"""A turn: one user message and everything the agent does about it, running independently of any client.

Every frame of a turn gets a sequence number that is monotonic per session (the SSE `id:`). Frames are kept in a
bounded in-memory window for live subscribers and written to the store in batches, so any number of clients can
follow a turn, re-attach with `Last-Event-ID` (here or after a restart) and catch up from the store when they fall
behind the window. Memory per turn is bounded by the window, not by the turn's length or its subscriber count.

Backpressure: the client that sent the message (the *sender*) may lag at most `SENDER_LAG` frames; past that the
turn waits for it, which stops the server reading the bridge socket and so holds the SDK back. A sender that stops
reading entirely is dropped by the SSE writer's timeout, after which the turn runs on at full speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import jsoncodec
from ..store.timeline import TurnMessage

WINDOW = 2048
SENDER_LAG = 512
# Frames handed to a subscriber at once: bounds what one stalled client pins in memory while its write blocks.
BATCH = 64
# How long a follower (a subscriber that is not the turn's sender) lets frames gather after it is woken.
FOLLOWER_BATCH_S = 0.05
# A running turn's frames are stored every 64, or a second after the last write: a turn of a few seconds costs
# its start and its end, and a long one a write a second at most (followers past the live window read these).
FLUSH_EVERY = 64
FLUSH_AFTER_S = 1.0


@dataclass(slots=True)
class TurnTimings:
    """The server's part of a turn before the bridge has the query (logged with ASH_DEBUG_TIMING)."""

    received: float  # time.perf_counter() when the message arrived
    http_ms: float = -1.0  # from the request reaching the app to `received` (routing, auth, the body's checks)
    server_lookup_ms: float = -1.0  # lookups, locks, storing the message (a sandbox start counted apart)
    sandbox_start_ms: float = 0.0
    read_ms: float = -1.0  # of server_lookup_ms: up to the session read under its lock
    store_ms: float = -1.0  # of server_lookup_ms: the start transaction (the user's message, the turn's start)
    # After `received + server_lookup_ms`: until the turn's task ran, and until the query was written to the bridge.
    task_start_ms: float = -1.0
    query_written_ms: float = -1.0

    def describe(
        self, session_id: str, turn_id: str, started: float, first_event_ms: float | None, first_token_ms: float | None
    ) -> str:
        """The turn's `timing` log line (bench/message_overhead.py reads it): ms since `received` or apart, and two
        instants (`*_at`) in ms of CLOCK_MONOTONIC, the clock the instrumented bridge notes its query on."""
        parts = {
            "http_ms": self.http_ms,
            "server_lookup_ms": self.server_lookup_ms,
            "read_ms": self.read_ms,
            "store_ms": self.store_ms,
            "sandbox_start_ms": self.sandbox_start_ms,
            "task_start_ms": self.task_start_ms,
            "query_written_ms": self.query_written_ms,
            "received_at": self.received * 1000,
            "query_written_at": started * 1000 + self.query_written_ms,
            "bridge_first_event_ms": first_event_ms if first_event_ms is not None else -1.0,
            "sdk_first_token_ms": first_token_ms if first_token_ms is not None else -1.0,
            "total_ms": (time.perf_counter() - self.received) * 1000,
        }
        return f"timing session={session_id} turn={turn_id} " + " ".join(f"{k}={v:.3f}" for k, v in parts.items())


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    event: str
    # The JSON of the frame's data, serialised once: every subscriber and the store reuse it.
    data_json: str
    partial: bool = False

    @property
    def data(self) -> Any:
        return jsoncodec.loads(self.data_json)

    def wire(self) -> bytes:
        # Not cached: a window of frames would then hold every frame twice (the test_fanout memory bound).
        return f"id: {self.seq}\nevent: {self.event}\ndata: {self.data_json}\n\n".encode()


# Loads stored frames of a session with seq in (after, before), oldest first, at most `limit`.
FrameLoader = Callable[[int, int | None, int], Awaitable[Sequence[Frame]]]
# Waits (at most the given seconds) for the session's next turn to start; None if none did.
TurnWaiter = Callable[[float | None], Awaitable["Turn | None"]]


@dataclass
class Turn:
    session_id: str
    first_seq: int
    id: str = field(default_factory=lambda: "turn-" + uuid.uuid4().hex)
    window: deque[Frame] = field(default_factory=deque)
    finished: bool = False
    interrupted: bool = False
    had_error: bool = False
    task: asyncio.Task[None] | None = None
    # ASH_DEBUG_TIMING: where the time of this turn went before its task started (sessions/turns.py).
    timings: TurnTimings = field(default_factory=lambda: TurnTimings(received=time.perf_counter()))
    # Frames not yet written to the store; frames leave the window only once written.
    unflushed: list[Frame] = field(default_factory=list)
    # SDK messages to store with the next flush of the frames (or the turn's end).
    unwritten: list[TurnMessage] = field(default_factory=list)
    sender_seq: int = 0
    sender_attached: bool = False
    _last_flush: float = field(default_factory=time.monotonic)
    # Set (and replaced) when frames are published or the turn ends: what subscribers wait for.
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set (and replaced) when the sender reads on or leaves: what the producer waits for. Apart from `_changed`,
    # so that the sender's every step does not wake every follower of the session.
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.next_seq = self.first_seq
        self.sender_seq = self.first_seq - 1

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def publish(self, event: str, data: dict[str, Any], *, partial: bool = False) -> Frame:
        return self.publish_json(event, jsoncodec.dumps(data), partial=partial)

    def publish_json(self, event: str, data_json: str, *, partial: bool = False) -> Frame:
        """`publish` of data already serialised (an SDK message, encoded once for the store and the stream)."""
        frame = Frame(self.next_seq, event, data_json, partial)
        self.next_seq += 1
        self.had_error = self.had_error or event == "error"
        self.window.append(frame)
        self.unflushed.append(frame)
        self._trim()
        self._wake()
        return frame

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def needs_flush(self) -> bool:
        return bool(self.unflushed) and (
            len(self.unflushed) >= FLUSH_EVERY or time.monotonic() - self._last_flush >= FLUSH_AFTER_S
        )

    def take_unwritten(self) -> list[TurnMessage]:
        messages, self.unwritten = self.unwritten, []
        return messages

    def take_unflushed(self) -> list[Frame]:
        frames, self.unflushed = self.unflushed, []
        self._last_flush = time.monotonic()
        self._trim()
        return frames

    def _trim(self) -> None:
        oldest_unflushed = self.unflushed[0].seq if self.unflushed else self.next_seq
        while len(self.window) > WINDOW and self.window[0].seq < oldest_unflushed:
            self.window.popleft()

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    async def wait_changed(self, limit_s: float | None) -> None:
        """Wait until something is published or the turn ends, or `limit_s` passes."""
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), limit_s)

    def sender_progress(self, seq: int) -> None:
        self.sender_seq = seq
        self._wake_producer()

    def detach_sender(self) -> None:
        self.sender_attached = False
        self._wake_producer()

    def _wake_producer(self) -> None:
        woken, self._progress = self._progress, asyncio.Event()
        woken.set()

    async def wait_for_sender(self) -> None:
        """Hold the producer while the sender is more than SENDER_LAG frames behind (and still reading)."""
        while self.sender_attached and self.last_seq - self.sender_seq > SENDER_LAG:
            await self._progress.wait()


class Subscription:
    """One reader's position in a session's frames: stored frames first, then the live turn (if any)."""

    def __init__(
        self,
        after: int,
        *,
        include_partial: bool,
        loader: FrameLoader,
        turn: Turn | None,
        sender: bool = False,
        next_turn: TurnWaiter | None = None,
    ) -> None:
        self._next_turn = next_turn  # set: follow the session's later turns too, instead of ending
        self.position = after
        self.include_partial = include_partial
        self._loader = loader
        self._turn = turn
        self._sender = sender
        if sender and turn is not None:
            turn.sender_attached = True
        self.done = False

    async def next_frames(self, wait: float | None) -> list[Frame]:
        """Frames after the current position ([] if none arrived within `wait` seconds); sets `done` at the end."""
        while not self.done:
            frames = await self._available()
            if frames:
                self.position = frames[-1].seq
                if self._sender and self._turn is not None:
                    self._turn.sender_progress(self.position)
                visible = [f for f in frames if self.include_partial or not f.partial]
                if visible:
                    return visible
                continue
            turn = self._turn
            if turn is None or (turn.finished and self.position >= turn.last_seq):
                if self._next_turn is None:
                    self.done = True
                    break
                upcoming = await self._next_turn(wait)
                if upcoming is None or upcoming is turn:
                    return []  # nothing new within `wait`: a keepalive
                self._turn = upcoming
                continue
            await turn.wait_changed(wait)
            if not self._sender and not turn.finished and turn.last_seq > self.position:
                # A follower takes what the next few milliseconds publish in one go: 200 followers woken per
                # frame would take the CPU from the turn and its sender (who is woken at once).
                await asyncio.sleep(FOLLOWER_BATCH_S)
            if wait is not None and not await self._has_more():
                return []
        return []

    async def _has_more(self) -> bool:
        turn = self._turn
        return turn is not None and (turn.last_seq > self.position or turn.finished)

    async def _available(self) -> list[Frame]:
        turn = self._turn
        window_start = turn.window[0].seq if turn is not None and turn.window else None
        if turn is None or window_start is None or self.position + 1 < window_start:
            # Behind the live window (or no live turn): read from the store.
            before = window_start if window_start is not None else None
            stored = list(await self._loader(self.position, before, BATCH))
            if stored:
                return stored
            if turn is None:
                return []
        # The window holds consecutive frames: index it, do not scan it (every follower does this per wake-up).
        window = turn.window
        start = max(0, self.position + 1 - window[0].seq) if window else 0
        return [window[i] for i in range(start, min(start + BATCH, len(window)))]

    @property
    def between_turns(self) -> bool:
        """Nothing left to deliver now: no turn, or the turn's end delivered (a follower waits for the next)."""
        turn = self._turn
        return turn is None or (turn.finished and self.position >= turn.last_seq)

    def close(self) -> None:
        if self._sender and self._turn is not None:
            self._turn.detach_sender()
