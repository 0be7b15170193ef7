"""The event path's JSON (orjson) writes what the standard library's compact JSON writes, for what orjson alone
would refuse or write differently too, and reads what only the standard library reads."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from ash_server.jsoncodec import dumps, loads

VALUES: list[Any] = [
    {"type": "assistant", "content": [{"text": "é ✓ \u2028", "n": 1.5, "ok": True, "none": None}]},
    {"big": 2**70, "negative": -(2**65)},  # beyond 64 bits: orjson refuses them
    {"x": float("nan"), "y": [float("inf")]},  # orjson would write null
    {1: "an integer key", "nested": {2: [3]}},
    [1e20, 0.1, -0.0],
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_what_the_standard_library_writes(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_loads_reads_what_only_the_standard_library_reads() -> None:
    assert loads(b'{"a": [1, "b"]}') == {"a": [1, "b"]}
    found = loads('{"x": NaN, "y": Infinity}')
    assert math.isnan(found["x"]) and found["y"] == math.inf
    with pytest.raises(ValueError):
        loads(b"{not json")
