"""s3://bucket/prefix: snapshots in Amazon S3 or an S3-compatible store (boto3; `pip install 'ash[s3]'`).

Credentials and region come from the usual AWS sources (environment, config files, instance role);
ASH_S3_ENDPOINT_URL points at another S3-compatible endpoint. Uploads stream from the file (multipart above
8 MiB); S3 publishes an object only when its upload completes.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from .base import BucketSnapshotStore, SnapshotMissing, SnapshotStoreError

MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class S3SnapshotStore(BucketSnapshotStore):
    scheme = "s3"

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
        except ImportError as exc:  # an optional backend
            raise SnapshotStoreError("s3:// snapshots need boto3: pip install 'ash[s3]'") from exc
        super().__init__(bucket, prefix)
        self._client: Any = boto3.session.Session().client("s3", endpoint_url=endpoint_url)

    def is_missing(self, exc: Exception) -> bool:
        return _code(exc) in MISSING_CODES

    async def check(self) -> None:
        head = functools.partial(self._client.head_bucket, Bucket=self.bucket)
        await self.call(head, f"snapshot bucket {self.url} cannot be used")

    async def put(self, key: str, source: Path) -> None:
        upload = functools.partial(self._client.upload_file, str(source), self.bucket, self.object_name(key))
        await self.call(upload, f"upload of {key} to {self.url} failed", key=key)

    async def get(self, key: str, target: Path) -> None:
        download = functools.partial(self._client.download_file, self.bucket, self.object_name(key), str(target))
        await self.call(download, f"download of {key} from {self.url} failed", key=key, missing=True)

    async def delete(self, key: str) -> None:
        remove = functools.partial(self._client.delete_object, Bucket=self.bucket, Key=self.object_name(key))
        with contextlib.suppress(SnapshotMissing):  # deleting a missing key is not an error
            await self.call(remove, f"delete of {key} in {self.url} failed", key=key, missing=True)

    async def list(self, prefix: str) -> list[str]:
        full = self.object_name(prefix, check=False)

        def scan() -> list[str]:
            keys = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    keys.append(self.key_of(item["Key"]))
            return sorted(keys)

        return await self.call(scan, f"listing {self.url} failed")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
