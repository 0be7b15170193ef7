"""One contract, every snapshot backend: local folder, S3 (moto in server mode) and GCS (the emulator), over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ash_server.snapshots import SnapshotMissing, SnapshotStore, SnapshotStoreError, open_store
from ash_server.snapshots.local import LocalSnapshotStore
from tests.support.storage import GcsServer, S3Server

BIG = 12 * 1024 * 1024  # above the S3 multipart threshold and the GCS chunk size: uploads in parts


@pytest.fixture(params=["file", "s3", "gcs"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SnapshotStore]:
    """A fresh, empty store behind each backend, opened from its URL as the server opens it."""
    bucket = f"ash-{uuid.uuid4().hex[:12]}"
    if request.param == "file":
        url, endpoint = f"file://{tmp_path / 'snapshots'}", None
    elif request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        url, endpoint = f"s3://{s3.bucket(bucket)}/team/prefix", s3.endpoint
    else:
        gcs: GcsServer = request.getfixturevalue("gcs_server")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
        url, endpoint = f"gs://{gcs.bucket(bucket)}/team/prefix", None
    store = open_store(url, s3_endpoint_url=endpoint)
    await store.check()
    yield store


def payload(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def test_an_uploaded_object_comes_back_byte_for_byte(backend: SnapshotStore, tmp_path: Path) -> None:
    data = payload(tmp_path / "up", BIG)
    await backend.put("t1/s1/a.tar.zst", tmp_path / "up")
    await backend.get("t1/s1/a.tar.zst", tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == data


async def test_a_missing_object_is_snapshot_missing(backend: SnapshotStore, tmp_path: Path) -> None:
    with pytest.raises(SnapshotMissing):
        await backend.get("t1/s1/nothing.tar.zst", tmp_path / "down")
    assert not (tmp_path / "down").exists() or (tmp_path / "down").stat().st_size == 0


async def test_put_replaces_and_delete_is_idempotent(backend: SnapshotStore, tmp_path: Path) -> None:
    payload(tmp_path / "first", 10)
    second = payload(tmp_path / "second", 20)
    await backend.put("t1/s1/x", tmp_path / "first")
    await backend.put("t1/s1/x", tmp_path / "second")
    await backend.get("t1/s1/x", tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == second
    await backend.delete("t1/s1/x")
    await backend.delete("t1/s1/x")
    with pytest.raises(SnapshotMissing):
        await backend.get("t1/s1/x", tmp_path / "again")


async def test_keys_are_listed_by_prefix_and_scoped_by_tenant(backend: SnapshotStore, tmp_path: Path) -> None:
    payload(tmp_path / "f", 5)
    for key in ("tenant-a/s1/1.tar.zst", "tenant-a/s2/1.tar.zst", "tenant-b/s1/1.tar.zst"):
        await backend.put(key, tmp_path / "f")
    assert await backend.list("tenant-a/") == ["tenant-a/s1/1.tar.zst", "tenant-a/s2/1.tar.zst"]
    assert await backend.list("tenant-b/s1/") == ["tenant-b/s1/1.tar.zst"]
    assert await backend.list("tenant-c/") == []


async def test_keys_that_leave_their_place_are_refused(backend: SnapshotStore, tmp_path: Path) -> None:
    payload(tmp_path / "f", 5)
    for key in ("../escape", "/absolute", "a//b", "a/./b", ""):
        with pytest.raises(ValueError):
            await backend.put(key, tmp_path / "f")


async def test_a_failed_upload_leaves_no_object(backend: SnapshotStore, tmp_path: Path) -> None:
    with pytest.raises((SnapshotStoreError, OSError)):
        await backend.put("t1/s1/never", tmp_path / "does-not-exist")
    assert await backend.list("t1/s1/") == []


async def test_a_local_upload_is_renamed_into_place_whole(tmp_path: Path) -> None:
    """The local backend writes a temporary file and renames it: no half-written object under the key, ever."""
    store = LocalSnapshotStore(tmp_path / "snapshots")
    payload(tmp_path / "f", 1000)
    await store.put("t/s/k", tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "snapshots" / "t" / "s").iterdir()) == ["k"]


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "file://relative/path", "s3://", "gs:///prefix", "s3://bucket/../up"],
)
def test_urls_that_name_no_backend_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="ASH_SNAPSHOT_URL"):
        open_store(url)


async def test_a_missing_bucket_is_a_clear_startup_error(
    s3_server: S3Server, gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**s3_server.env, **gcs_server.env}.items():
        monkeypatch.setenv(name, value)
    for url in ("s3://no-such-bucket-here/x", "gs://no-such-bucket-here/x"):
        with pytest.raises(SnapshotStoreError, match="no-such-bucket-here"):
            await open_store(url, s3_endpoint_url=s3_server.endpoint).check()
