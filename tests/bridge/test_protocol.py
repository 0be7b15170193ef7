from __future__ import annotations

import pytest

from ash_bridge import protocol
from ash_bridge.protocol import Command, Event, ProtocolError


def test_commands_round_trip() -> None:
    command = Command(cmd="query", id="r1", prompt="hi", include_partial_messages=True, options={"model": "m"})
    line = protocol.encode(command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode_command(line) == command
    assert protocol.decode_command(protocol.encode(Command(cmd="interrupt", id="r1"))).cmd == "interrupt"
    assert protocol.decode_command(protocol.encode(Command(cmd="listen", id="l1"))) == Command(cmd="listen", id="l1")


def test_events_round_trip() -> None:
    for event in [
        Event(event="ready", id="", pid=7),
        Event(event="message", id="r1", message={"type": "assistant", "message": {"content": []}}),
        Event(event="error", id="r1", error="boom", code="sdk_error"),
        Event(event="done", id="r1", sdk_session_id="abc"),
        Event(event="background", id="l1", message={"type": "result", "result": "the task ended"}),
    ]:
        assert protocol.decode_event(protocol.encode(event)) == event


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"cmd": "rm -rf", "id": "x"}\n', "unknown command"),
        (b'{"cmd": "query", "id": "x"}\n', "needs a prompt"),
        (b'{"cmd": "query", "id": 5, "prompt": "x"}\n', "id is not a string"),
        (b'{"cmd": "query", "id": "x", "prompt": "x", "options": []}\n', "options"),
    ],
)
def test_bad_commands_raise_errors_that_carry_the_frame(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        protocol.decode_command(line)
    assert reason in raised.value.reason
    assert raised.value.frame == line[:200]


def test_bad_events_are_rejected() -> None:
    with pytest.raises(ProtocolError, match="unknown event"):
        protocol.decode_event(b'{"event": "surprise", "id": ""}')
    with pytest.raises(ProtocolError, match="without a message"):
        protocol.decode_event(b'{"event": "message", "id": "r1"}')
    with pytest.raises(ProtocolError, match="background event without a message"):
        protocol.decode_event(b'{"event": "background", "id": "l1"}')


def test_frames_are_size_capped() -> None:
    huge = Event(event="message", id="r1", message={"blob": "x" * protocol.MAX_FRAME_BYTES})
    with pytest.raises(ProtocolError, match="cap"):
        protocol.encode(huge)
    with pytest.raises(ProtocolError, match="cap"):
        protocol.decode_event(b"{" + b" " * protocol.MAX_FRAME_BYTES + b"}")


def test_the_exec_helpers_not_running_answer_is_the_protocols() -> None:
    from ash_bridge import enter, protocol

    assert (enter.NOT_RUNNING, enter.NOT_RUNNING_MESSAGE) == (
        protocol.EXEC_NOT_RUNNING,
        protocol.EXEC_NOT_RUNNING_MESSAGE,
    )
