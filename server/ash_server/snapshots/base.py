"""The interface every snapshot backend implements: put, get, delete and list whole objects by key.

A backend only moves files. What a snapshot contains, how it is named and when it counts as the session's latest
are decided above it (snapshots/service.py): an object is referenced only once a database row says so, and that
row is written after the upload completed, so a backend need not make partial objects invisible by itself (all
three do anyway: S3 and GCS publish an object when its upload completes, the local one renames a finished file).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import SnapshotError

T = TypeVar("T")


class SnapshotStoreError(SnapshotError):
    """The snapshot store could not be reached or refused an operation."""


class SnapshotMissing(SnapshotStoreError):
    """No object under that key."""


def valid_key(key: str) -> str:
    """Keys are relative, `/`-separated, without `.`/`..` parts: the same on every backend."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
        raise ValueError(f"invalid snapshot key {key!r}")
    return key


class SnapshotStore(abc.ABC):
    """Objects addressed by keys under one base URL. Blocking client libraries run in threads."""

    #: The URL the store was opened with (for messages; never holds credentials).
    url: str

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise SnapshotStoreError, saying why, if the store cannot be used (no bucket, no access)."""

    @abc.abstractmethod
    async def put(self, key: str, source: Path) -> None:
        """Upload the file `source` as `key`, streaming it. The object appears whole or not at all."""

    @abc.abstractmethod
    async def get(self, key: str, target: Path) -> None:
        """Download `key` into the file `target`, streaming it; SnapshotMissing if there is no such object."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> list[str]:
        """The keys that start with `prefix`, sorted."""


class BucketSnapshotStore(SnapshotStore):
    """A store in a cloud bucket (S3, GCS): keys live under one prefix of one bucket, and a failure's message is the
    first line of the client's error (their messages run long and carry request ids, never credentials)."""

    scheme: str

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"{self.scheme}://{bucket}/{self.prefix}".rstrip("/")

    def object_name(self, key_or_prefix: str, *, check: bool = True) -> str:
        """The bucket's object name for a key (checked) or a listing prefix (not checked: it may be partial)."""
        if check:
            valid_key(key_or_prefix)
        return f"{self.prefix}/{key_or_prefix}" if self.prefix else key_or_prefix

    def key_of(self, name: str) -> str:
        """The key of an object the bucket listed."""
        return name[len(self.prefix) + 1 :] if self.prefix else name

    @staticmethod
    def reason(exc: Exception) -> str:
        text = str(exc)
        return text.splitlines()[0] if text else type(exc).__name__

    @abc.abstractmethod
    def is_missing(self, exc: Exception) -> bool:
        """Whether the client's error says there is no such object."""

    async def call(self, fn: Callable[[], T], failure: str, *, key: str | None = None, missing: bool = False) -> T:
        """`fn()` (a blocking client call) in a thread. Its error is raised as SnapshotStoreError, `<failure>:
        <reason>` with the key; as SnapshotMissing instead when `missing` and the client says the object is not
        there."""
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:
            fields = {} if key is None else {"key": key}
            if missing and self.is_missing(exc):
                raise SnapshotMissing(f"no object {key} in {self.url}", **fields) from exc
            raise SnapshotStoreError(f"{failure}: {self.reason(exc)}", **fields) from exc
