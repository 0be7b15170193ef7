"""Usage read from relayed responses, whatever the chunk boundaries."""

from __future__ import annotations

import json

from ash_server.gateway.usage import UsageMeter


def sse(event: str, data: dict[str, object], sep: str = "\n") -> bytes:
    return f"event: {event}{sep}data: {json.dumps(data)}{sep}{sep}".encode()


def stream(sep: str = "\n") -> bytes:
    start_usage = {
        "input_tokens": 120,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 30,
        "output_tokens": 1,
    }
    return b"".join(
        [
            sse(
                "message_start", {"type": "message_start", "message": {"model": "claude-x", "usage": start_usage}}, sep
            ),
            sse("ping", {"type": "ping"}, sep),
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                sep,
            ),
            # Text that mentions the event names must not confuse the meter.
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "message_delta usage é"},
                },
                sep,
            ),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}, sep),
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {"type": "tool_use", "id": "t", "name": "Bash", "input": {}},
                },
                sep,
            ),
            sse("content_block_stop", {"type": "content_block_stop", "index": 1}, sep),
            sse(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 57}},
                sep,
            ),
            sse("message_stop", {"type": "message_stop"}, sep),
        ]
    )


def test_every_split_of_a_stream_gives_the_same_usage() -> None:
    for sep in ("\n", "\r\n"):
        body = stream(sep)
        for cut in range(1, len(body)):
            meter = UsageMeter(streaming=True)
            meter.feed(body[:cut])
            meter.feed(body[cut:])
            usage = meter.finish()
            assert (usage.model, usage.input_tokens, usage.output_tokens) == ("claude-x", 120, 57), cut
            assert (usage.cache_creation_tokens, usage.cache_read_tokens, usage.tool_calls) == (7, 30, 1), cut


def test_byte_by_byte_and_metrics() -> None:
    meter = UsageMeter(streaming=True)
    for i in range(len(body := stream())):
        meter.feed(body[i : i + 1])
    assert meter.finish().metrics() == [
        ("message", 1),
        ("input_tokens", 120),
        ("output_tokens", 57),
        ("cache_creation_tokens", 7),
        ("cache_read_tokens", 30),
        ("tool_call", 1),
    ]


def test_a_cut_stream_keeps_what_was_seen() -> None:
    meter = UsageMeter(streaming=True)
    body = stream()
    meter.feed(body[: body.index(b"\n\n") + 20])  # message_start and the start of ping
    usage = meter.finish()
    assert usage.seen and usage.input_tokens == 120 and usage.output_tokens == 1


def test_huge_events_are_skipped_not_buffered() -> None:
    meter = UsageMeter(streaming=True)
    huge = sse("content_block_delta", {"type": "content_block_delta", "delta": {"text": "x" * 3_000_000}})
    for i in range(0, len(huge), 65536):
        meter.feed(huge[i : i + 65536])
        assert len(meter._buffer) <= 1024 * 1024 + 65536
    meter.feed(stream())
    assert meter.finish().output_tokens == 57


def test_json_response() -> None:
    body = json.dumps(
        {
            "type": "message",
            "model": "claude-y",
            "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "a", "name": "Bash", "input": {}}],
            "usage": {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 0},
        }
    ).encode()
    meter = UsageMeter(streaming=False)
    meter.feed(body[:10])
    meter.feed(body[10:])
    usage = meter.finish()
    assert (usage.model, usage.input_tokens, usage.output_tokens, usage.tool_calls) == ("claude-y", 9, 4, 1)


def test_no_usage_no_record() -> None:
    meter = UsageMeter(streaming=False)
    meter.feed(b"not json")
    assert not meter.finish().seen
