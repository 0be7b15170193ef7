"""Subscriptions in memory: a follower reads the live window by index from wherever it stands (and the store
behind it), the sender's progress wakes the producer only, and a follower gathers frames before it wakes."""

from __future__ import annotations

import asyncio

from ash_server.sessions import turn as turn_module
from ash_server.sessions.turn import BATCH, WINDOW, Frame, Subscription, Turn


def published(count: int) -> Turn:
    turn = Turn(session_id="s", first_seq=1)
    for n in range(count):
        turn.publish("message", {"n": n})
        if len(turn.unflushed) >= 64:
            turn.take_unflushed()  # as the turn runner's flushes do: the window may then drop what is stored
    return turn


async def test_a_follower_gets_the_frames_after_its_position_from_the_window_or_the_store() -> None:
    turn = published(WINDOW + 500)
    assert turn.window[0].seq > 1  # the oldest frames left the window: they are in the store only
    stored_reads: list[tuple[int, int | None]] = []

    async def store(after: int, before: int | None, limit: int) -> list[Frame]:
        stored_reads.append((after, before))
        end = min(before or turn.next_seq, after + 1 + limit)
        return [Frame(seq, "message", "{}") for seq in range(after + 1, end)]

    for position in (0, turn.window[0].seq - 1, turn.window[0].seq + 100, turn.last_seq - 10):
        subscription = Subscription(position, include_partial=True, loader=store, turn=turn)
        frames = await subscription.next_frames(0)
        assert [f.seq for f in frames] == list(range(position + 1, min(position + 1 + BATCH, turn.next_seq)))
    assert stored_reads == [(0, turn.window[0].seq)]  # only the follower behind the window read the store


async def test_the_senders_progress_wakes_the_producer_and_no_follower() -> None:
    turn = published(10)
    changed = turn._changed
    sender = Subscription(0, include_partial=True, loader=_no_store, turn=turn, sender=True)
    await sender.next_frames(0)
    assert turn.sender_seq == 10 and turn._changed is changed and not changed.is_set()


async def test_a_follower_takes_what_was_published_meanwhile_in_one_go() -> None:
    turn = published(1)
    follower = Subscription(1, include_partial=True, loader=_no_store, turn=turn)

    async def produce() -> None:
        for n in range(5):
            await asyncio.sleep(turn_module.FOLLOWER_BATCH_S / 10)
            turn.publish("message", {"n": n})

    producer = asyncio.create_task(produce())
    frames = await follower.next_frames(5)
    await producer
    assert [f.seq for f in frames] == [2, 3, 4, 5, 6]  # woken by the first, it waited for the other four


async def _no_store(after: int, before: int | None, limit: int) -> list[Frame]:
    return []
