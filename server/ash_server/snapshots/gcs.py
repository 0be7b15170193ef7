"""gs://bucket/prefix: snapshots in Google Cloud Storage (google-cloud-storage; `pip install 'ash[gcs]'`).

Credentials come from Application Default Credentials; with `STORAGE_EMULATOR_HOST` set (an emulator, in tests)
the client talks to it anonymously. Uploads stream from the file (resumable, in 8 MiB chunks); GCS publishes an
object only when its upload is finalized.
"""

from __future__ import annotations

import contextlib
import functools
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

    def is_missing(self, exc: Exception) -> bool:
        from google.api_core.exceptions import NotFound

        return isinstance(exc, NotFound)

    async def check(self) -> None:
        exists = await self.call(self._bucket.exists, f"snapshot bucket {self.url} cannot be used")
        if not exists:
            raise SnapshotStoreError(f"snapshot bucket {self.bucket} does not exist ({self.url})")

    async def put(self, key: str, source: Path) -> None:
        upload = functools.partial(self._blob(key).upload_from_filename, str(source))
        await self.call(upload, f"upload of {key} to {self.url} failed", key=key)

    async def get(self, key: str, target: Path) -> None:
        download = functools.partial(self._blob(key).download_to_filename, str(target))
        await self.call(download, f"download of {key} from {self.url} failed", key=key, missing=True)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(SnapshotMissing):  # deleting a missing key is not an error
            # The blob is named inside the call: an invalid key fails as SnapshotStoreError, not ValueError.
            await self.call(
                lambda: self._blob(key).delete(), f"delete of {key} in {self.url} failed", key=key, missing=True
            )

    async def list(self, prefix: str) -> list[str]:
        full = self.object_name(prefix, check=False)

        def scan() -> list[str]:
            return sorted(self.key_of(blob.name) for blob in self._client.list_blobs(self.bucket, prefix=full))

        return await self.call(scan, f"listing {self.url} failed")
