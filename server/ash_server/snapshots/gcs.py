"""gs://bucket/prefix: snapshots in Google Cloud Storage (google-cloud-storage; `pip install 'ash[gcs]'`).

Credentials come from Application Default Credentials; with `STORAGE_EMULATOR_HOST` set (an emulator, in tests)
the client talks to it anonymously. Uploads stream from the file (resumable, in 8 MiB chunks); GCS publishes an
object only when its upload is finalized.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from .base import SnapshotMissing, SnapshotStore, SnapshotStoreError, valid_key

CHUNK_BYTES = 8 * 1024 * 1024


class GcsSnapshotStore(SnapshotStore):
    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            from google.cloud import storage  # type: ignore[import-untyped]
        except ImportError as exc:  # an optional backend
            raise SnapshotStoreError("gs:// snapshots need google-cloud-storage: pip install 'ash[gcs]'") from exc
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}".rstrip("/")
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client: Any = storage.Client(project="ash-emulated", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        else:
            client = storage.Client()
        self._client = client
        self._bucket: Any = client.bucket(bucket)

    def _name(self, key: str) -> str:
        valid_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def check(self) -> None:
        try:
            exists = await asyncio.to_thread(self._bucket.exists)
        except Exception as exc:
            raise SnapshotStoreError(f"snapshot bucket {self.url} cannot be used: {_reason(exc)}") from exc
        if not exists:
            raise SnapshotStoreError(f"snapshot bucket {self.bucket_name} does not exist ({self.url})")

    async def put(self, key: str, source: Path) -> None:
        blob = self._bucket.blob(self._name(key), chunk_size=CHUNK_BYTES)
        try:
            await asyncio.to_thread(blob.upload_from_filename, str(source))
        except Exception as exc:
            raise SnapshotStoreError(f"upload of {key} to {self.url} failed: {_reason(exc)}", key=key) from exc

    async def get(self, key: str, target: Path) -> None:
        from google.api_core.exceptions import NotFound

        blob = self._bucket.blob(self._name(key), chunk_size=CHUNK_BYTES)
        try:
            await asyncio.to_thread(blob.download_to_filename, str(target))
        except NotFound as exc:
            raise SnapshotMissing(f"no object {key} in {self.url}", key=key) from exc
        except Exception as exc:
            raise SnapshotStoreError(f"download of {key} from {self.url} failed: {_reason(exc)}", key=key) from exc

    async def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            await asyncio.to_thread(self._bucket.blob(self._name(key)).delete)
        except NotFound:
            pass
        except Exception as exc:
            raise SnapshotStoreError(f"delete of {key} in {self.url} failed: {_reason(exc)}", key=key) from exc

    async def list(self, prefix: str) -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix

        def scan() -> list[str]:
            cut = len(self.prefix) + 1 if self.prefix else 0
            return sorted(blob.name[cut:] for blob in self._client.list_blobs(self.bucket_name, prefix=full))

        try:
            return await asyncio.to_thread(scan)
        except Exception as exc:
            raise SnapshotStoreError(f"listing {self.url} failed: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
