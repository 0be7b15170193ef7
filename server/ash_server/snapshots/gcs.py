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

from .base import BucketSnapshotStore, SnapshotMissing, SnapshotStoreError

CHUNK_BYTES = 8 * 1024 * 1024


class GcsSnapshotStore(BucketSnapshotStore):
    scheme = "gs"

    def __init__(self, bucket: str, prefix: str) -> None:
        try:
            from google.cloud import storage  # type: ignore[import-untyped]
        except ImportError as exc:  # an optional backend
            raise SnapshotStoreError("gs:// snapshots need google-cloud-storage: pip install 'ash[gcs]'") from exc
        super().__init__(bucket, prefix)
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client: Any = storage.Client(project="ash-emulated", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        else:
            client = storage.Client()
        self._client = client
        self._bucket: Any = client.bucket(bucket)

    def _blob(self, key: str) -> Any:
        return self._bucket.blob(self.object_name(key), chunk_size=CHUNK_BYTES)

    async def check(self) -> None:
        try:
            exists = await asyncio.to_thread(self._bucket.exists)
        except Exception as exc:
            raise SnapshotStoreError(f"snapshot bucket {self.url} cannot be used: {self.reason(exc)}") from exc
        if not exists:
            raise SnapshotStoreError(f"snapshot bucket {self.bucket} does not exist ({self.url})")

    async def put(self, key: str, source: Path) -> None:
        blob = self._blob(key)
        try:
            await asyncio.to_thread(blob.upload_from_filename, str(source))
        except Exception as exc:
            raise SnapshotStoreError(f"upload of {key} to {self.url} failed: {self.reason(exc)}", key=key) from exc

    async def get(self, key: str, target: Path) -> None:
        from google.api_core.exceptions import NotFound

        blob = self._blob(key)
        try:
            await asyncio.to_thread(blob.download_to_filename, str(target))
        except NotFound as exc:
            raise SnapshotMissing(f"no object {key} in {self.url}", key=key) from exc
        except Exception as exc:
            raise SnapshotStoreError(f"download of {key} from {self.url} failed: {self.reason(exc)}", key=key) from exc

    async def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            await asyncio.to_thread(self._blob(key).delete)
        except NotFound:
            pass
        except Exception as exc:
            raise SnapshotStoreError(f"delete of {key} in {self.url} failed: {self.reason(exc)}", key=key) from exc

    async def list(self, prefix: str) -> list[str]:
        full = self.object_name(prefix, check=False)

        def scan() -> list[str]:
            return sorted(self.key_of(blob.name) for blob in self._client.list_blobs(self.bucket, prefix=full))

        try:
            return await asyncio.to_thread(scan)
        except Exception as exc:
            raise SnapshotStoreError(f"listing {self.url} failed: {self.reason(exc)}") from exc
