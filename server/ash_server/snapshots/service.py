"""Taking and restoring snapshots of sessions.

A snapshot is one object, `<tenant>/<session id>/<snapshot id>.tar.zst` under ASH_SNAPSHOT_URL: a tar stream of the
session's `workspace/` and `home/` (which holds the SDK's transcripts), compressed with zstd (level 1, with a frame
checksum). It is written to a temporary file under the data dir while its SHA-256 is computed, uploaded from there
(streaming: never whole in memory), and only then recorded as the session's latest in the `snapshots` table, with
its size and digest. That row is the commit point: an upload that failed half-way is never referenced, and a
download is checked against the digest before anything is extracted.

Restoring downloads the latest snapshot, checks it, extracts it into a staging folder next to the session's and
swaps the two in; on any failure the session's folder is left exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import uuid
import weakref
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, cast

import zstandard

from .. import archive
from ..errors import AshError, SnapshotError
from ..paths import DataDir, chown_tree, remove_tree
from ..store.models import SessionRow, Snapshot, utcnow
from ..store.repository import Store
from .base import SnapshotMissing, SnapshotStore

log = logging.getLogger(__name__)

SUFFIX = ".tar.zst"
# The latest and the one before: a server still downloading the previous latest is not cut off.
KEEP = 2
FOLDERS = ("workspace", "home")
# In a session folder, next to those: the id of the snapshot its contents were last saved to or restored from.
MARKER = ".snapshot"
READ_CHUNK = 1024 * 1024


class _Digest:
    """A file writer that hashes and counts what goes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def write_archive(sources: Sequence[tuple[str, Path]], target: Path) -> tuple[int, str]:
    """Pack `sources` into `target` (tar + zstd); returns its size and SHA-256."""
    with target.open("wb") as raw:
        digest = _Digest(raw)
        compressor = zstandard.ZstdCompressor(level=1, write_checksum=True)
        with compressor.stream_writer(cast(IO[bytes], digest), closefd=False) as stream:
            archive.pack(sources, stream)
        raw.flush()
        os.fsync(raw.fileno())
    return digest.size, digest.sha256.hexdigest()


def file_digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def read_archive(source: Path, dest: Path) -> None:
    """Extract a snapshot archive into the fresh folder `dest`."""
    with (
        source.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        archive.extract(tar, dest, allow_symlinks=True)


class SnapshotService:
    def __init__(
        self,
        store: Store,
        backend: SnapshotStore | None,
        data: DataDir,
        *,
        server_id: str,
        owner: tuple[int, int] | None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._data = data
        self._server_id = server_id
        self._owner = owner
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = weakref.WeakValueDictionary()
        self._scheduled: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._again: set[uuid.UUID] = set()
        self._tmp = data.root / "tmp"

    @property
    def enabled(self) -> bool:
        return self._backend is not None

    @property
    def url(self) -> str | None:
        return self._backend.url if self._backend is not None else None

    def _lock(self, session_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    def _temp(self, name: str) -> Path:
        self._tmp.mkdir(mode=0o700, exist_ok=True)
        return self._tmp / name

    # -- Taking -------------------------------------------------------------------------------------------------

    async def take(self, session: SessionRow) -> Snapshot | None:
        """Snapshot the session's folder now (after any snapshot of it in progress). None when snapshots are off,
        when the session has no files here, or when another server has taken the session over meanwhile."""
        if self._backend is None:
            return None
        async with self._lock(session.id):
            return await self._take(self._backend, session)

    async def _take(self, backend: SnapshotStore, session: SessionRow) -> Snapshot | None:
        sid = str(session.id)
        folder = self._data.session(session.tenant_id, sid)
        if not (folder / "workspace").is_dir():
            return None
        snapshot_id = uuid.uuid4().hex
        key = f"{session.tenant_id}/{sid}/{snapshot_id}{SUFFIX}"
        temp = self._temp(f"{snapshot_id}{SUFFIX}")
        try:
            sources = [(name, folder / name) for name in FOLDERS]
            size, sha256 = await asyncio.to_thread(write_archive, sources, temp)
            await backend.put(key, temp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        row = Snapshot(
            id=snapshot_id,
            tenant_id=session.tenant_id,
            session_id=session.id,
            generation=0,
            key=key,
            size=size,
            sha256=sha256,
            server_id=self._server_id,
            created_at=utcnow(),
        )
        if not await self._store.commit_snapshot(row, self._server_id):
            log.warning("session %s is run by another server now; dropped this server's stale snapshot", sid)
            await backend.delete(key)
            return None
        self._mark(session, snapshot_id)
        log.info("snapshot %s of session %s: %d bytes", snapshot_id, sid, size)
        for old in await self._store.older_snapshots(session.id, KEEP):
            with contextlib.suppress(AshError):
                await backend.delete(old.key)
                await self._store.delete_snapshot_row(old.id)
        return row

    def schedule(self, session: SessionRow) -> None:
        """Snapshot the session soon, in the background (after a turn: never on the stream's path). Requests made
        while one runs fold into one more run after it."""
        if self._backend is None:
            return
        if session.id in self._scheduled:
            self._again.add(session.id)
            return
        self._scheduled[session.id] = asyncio.create_task(self._background(session))

    async def _background(self, session: SessionRow) -> None:
        try:
            while True:
                self._again.discard(session.id)
                try:
                    await self.take(session)
                except Exception as exc:
                    log.warning("background snapshot of session %s failed: %s", session.id, exc)
                if session.id not in self._again:
                    return
        finally:
            self._scheduled.pop(session.id, None)

    async def settle(self, session_id: uuid.UUID) -> None:
        """Wait for a background snapshot of this session, if one is running."""
        task = self._scheduled.get(session_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self, timeout_s: float = 60) -> None:
        """Let background snapshots finish (shutdown)."""
        tasks = list(self._scheduled.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    # -- Restoring ----------------------------------------------------------------------------------------------

    def _mark(self, session: SessionRow, snapshot_id: str) -> None:
        folder = self._data.session(session.tenant_id, str(session.id))
        with contextlib.suppress(OSError):
            (folder / MARKER).write_text(snapshot_id)

    async def is_current(self, session: SessionRow) -> bool:
        """Whether this server's copy of the session's folder is at least as new as its latest snapshot: it was
        saved to or restored from that snapshot here (and maybe changed since), or no snapshot was taken
        elsewhere. A runner that ran a session, lost it to another and gets it back must restore, not reuse."""
        if self._backend is None:
            return True
        latest = await self._store.latest_snapshot(session.id)
        if latest is None:
            return True
        try:
            marker = (self._data.session(session.tenant_id, str(session.id)) / MARKER).read_text().strip()
        except OSError:
            return latest.server_id == self._server_id
        return marker == latest.id

    async def latest(self, session_id: uuid.UUID) -> Snapshot | None:
        return await self._store.latest_snapshot(session_id)

    async def restore(self, session: SessionRow) -> Snapshot | None:
        """Replace the session's local files with its latest snapshot; None if it has none. SnapshotError, with
        the session's folder untouched, if the snapshot cannot be had or is damaged."""
        sid = str(session.id)
        async with self._lock(session.id):
            latest = await self._store.latest_snapshot(session.id)
            if latest is None:
                return None
            if self._backend is None:
                raise SnapshotError(
                    f"session {sid} was snapshotted by another server, but this server has no ASH_SNAPSHOT_URL",
                    session_id=sid,
                )
            await self._restore(self._backend, session, latest)
            return latest

    async def _restore(self, backend: SnapshotStore, session: SessionRow, snapshot: Snapshot) -> None:
        sid = str(session.id)
        where = f"snapshot {snapshot.id} of session {sid} ({backend.url}/{snapshot.key})"
        fields = {"session_id": sid, "snapshot_id": snapshot.id}
        temp = self._temp(f"{snapshot.id}.download")
        tenant_dir = self._data.session(session.tenant_id, sid).parent
        tenant_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(tenant_dir, 0o711)
        staging = tenant_dir / f".{sid}.restore-{uuid.uuid4().hex[:8]}"
        try:
            try:
                await backend.get(snapshot.key, temp)
            except SnapshotMissing as exc:
                raise SnapshotError(f"{where} is missing from the snapshot store", **fields) from exc
            except SnapshotError as exc:
                raise SnapshotError(f"{where} could not be downloaded: {exc.message}", **fields) from exc
            size, sha256 = await asyncio.to_thread(file_digest, temp)
            if (size, sha256) != (snapshot.size, snapshot.sha256):
                raise SnapshotError(
                    f"{where} is damaged: {size} bytes with SHA-256 {sha256[:12]}…, expected {snapshot.size} "
                    f"bytes with {snapshot.sha256[:12]}…",
                    **fields,
                )
            staging.mkdir(mode=0o700)
            try:
                await asyncio.to_thread(read_archive, temp, staging)
            except (zstandard.ZstdError, tarfile.TarError, AshError, OSError, EOFError) as exc:
                reason = exc.message if isinstance(exc, AshError) else str(exc) or type(exc).__name__
                raise SnapshotError(f"{where} cannot be unpacked: {reason}", **fields) from exc
            await asyncio.to_thread(self._swap_in, session, staging)
            self._mark(session, snapshot.id)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            await remove_tree(staging)
        log.info("restored session %s from snapshot %s", sid, snapshot.id)

    def _swap_in(self, session: SessionRow, staging: Path) -> None:
        sid = str(session.id)
        folder = self._data.session(session.tenant_id, sid)
        if not folder.is_dir():
            self._data.make_session(session.tenant_id, sid, self._owner)
        for name in FOLDERS:
            (staging / name).mkdir(exist_ok=True)
            chown_tree(staging / name, self._owner)
        old = folder.parent / f".{sid}.old-{uuid.uuid4().hex[:8]}"
        old.mkdir(mode=0o700)
        try:
            for name in FOLDERS:
                if os.path.lexists(folder / name):
                    os.rename(folder / name, old / name)
                os.rename(staging / name, folder / name)
        finally:
            shutil.rmtree(old, ignore_errors=True)

    # -- Removing -----------------------------------------------------------------------------------------------

    async def expire(self, ended_before: datetime) -> int:
        """Delete the snapshots of sessions that ended before `ended_before`. Returns how many."""
        if self._backend is None:
            return 0
        removed = 0
        for row in await self._store.expired_snapshots(ended_before):
            try:
                await self._backend.delete(row.key)
            except AshError as exc:
                log.warning("could not delete expired snapshot %s: %s", row.key, exc.message)
                continue
            await self._store.delete_snapshot_row(row.id)
            removed += 1
        return removed
