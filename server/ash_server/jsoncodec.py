"""JSON on the event path (SDK messages from the bridge to the stream and the store), through orjson.

The output is what `json.dumps(value, separators=(",", ":"), ensure_ascii=False)` writes, so stored rows and SSE
frames look the same either way; the values orjson refuses (integers beyond 64 bits) go through `json`, as do
non-finite floats, which orjson would turn into null where the SDK's own JSON keeps NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    try:
        encoded = orjson.dumps(value, option=OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, or a type orjson does not know
        return _slow(value)
    if b"null" in encoded and _has_non_finite(value):
        return _slow(value)
    return encoded.decode()


def loads(data: bytes | str) -> Any:
    """orjson's decoder; JSON that only `json` reads (NaN, Infinity, as the SDK's CLI may write) through it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _slow(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False
