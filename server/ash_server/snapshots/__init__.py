"""Snapshots of sessions (workspace + home, with the SDK transcript) in a store chosen by ASH_SNAPSHOT_URL.

One backend module per kind of store behind `SnapshotStore` (base.py): local.py (`file://`), s3.py (`s3://`),
gcs.py (`gs://`). service.py decides what a snapshot holds, when it is the latest and how it is restored.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import SnapshotMissing, SnapshotStore, SnapshotStoreError

__all__ = ["SnapshotMissing", "SnapshotStore", "SnapshotStoreError", "open_store"]


def open_store(url: str, *, s3_endpoint_url: str | None = None) -> SnapshotStore:
    """The backend for a snapshot URL; ValueError (with what is expected) for one that names none."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"ASH_SNAPSHOT_URL {url!r}: use file:///absolute/path")
        from .local import LocalSnapshotStore

        return LocalSnapshotStore(Path(unquote(parts.path)))
    if parts.scheme in ("s3", "gs"):
        if not parts.netloc:
            raise ValueError(f"ASH_SNAPSHOT_URL {url!r}: use {parts.scheme}://bucket/prefix")
        prefix = unquote(parts.path).strip("/")
        if any(p in (".", "..") for p in prefix.split("/")):
            raise ValueError(f"ASH_SNAPSHOT_URL {url!r}: the prefix may not contain . or .. parts")
        if parts.scheme == "s3":
            from .s3 import S3SnapshotStore

            return S3SnapshotStore(parts.netloc, prefix, endpoint_url=s3_endpoint_url)
        from .gcs import GcsSnapshotStore

        return GcsSnapshotStore(parts.netloc, prefix)
    raise ValueError(f"ASH_SNAPSHOT_URL {url!r}: the scheme must be file://, s3:// or gs://")
