"""Snapshots of a session folder: what is archived, how it comes back, and what happens when it cannot."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from ash_server.errors import SnapshotError
from ash_server.paths import DataDir
from ash_server.snapshots.local import LocalSnapshotStore
from ash_server.snapshots.service import SnapshotService, file_digest
from ash_server.store.database import create_engine, upgrade
from ash_server.store.models import SessionRow, Snapshot, utcnow
from ash_server.store.repository import Store

ME, OTHER = "srv-this", "srv-other"


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ash.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def store(template: Path, tmp_path: Path) -> AsyncIterator[Store]:
    shutil.copyfile(template, tmp_path / "ash.db")
    store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ash.db'}"))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    data = DataDir(tmp_path / "data")
    data.prepare()
    return data


@pytest.fixture
def backend(tmp_path: Path) -> LocalSnapshotStore:
    return LocalSnapshotStore(tmp_path / "bucket")


def service(store: Store, data: DataDir, backend: LocalSnapshotStore, server_id: str = ME) -> SnapshotService:
    return SnapshotService(store, backend, data, server_id=server_id, owner=None)


async def new_session(store: Store, data: DataDir, runner: str | None = ME) -> SessionRow:
    now = utcnow()
    session = await store.add_session(
        SessionRow(
            tenant_id="tenant-a",
            agent_name="helper",
            agent_version=1,
            status="paused",
            config={},
            runner_id=runner,
            created_at=now,
            last_active_at=now,
        )
    )
    folder = data.make_session("tenant-a", str(session.id), None)
    workspace, home = folder / "workspace", folder / "home"
    (workspace / "src" / "deep").mkdir(parents=True)
    (workspace / "src" / "deep" / "main.py").write_text("print('hi')\n")
    (workspace / "run.sh").write_text("#!/bin/sh\necho run\n")
    (workspace / "run.sh").chmod(0o755)
    (workspace / "blob.bin").write_bytes(os.urandom(300_000))
    (workspace / "empty").mkdir()
    os.symlink("src/deep/main.py", workspace / "inside-link")
    os.symlink("/etc/passwd", workspace / "outside-link")  # archived as a link, never as /etc/passwd itself
    transcript = home / ".claude" / "projects" / "-w" / "abc.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text('{"type":"user","message":"my name is Ada"}\n')
    return session


def tree(root: Path) -> dict[str, object]:
    """Everything under root: file contents and modes, link targets, directories."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return found


async def test_a_snapshot_brings_back_workspace_and_transcript_exactly(
    store: Store, data: DataDir, backend: LocalSnapshotStore
) -> None:
    snapshots = service(store, data, backend)
    session = await new_session(store, data)
    folder = data.session("tenant-a", str(session.id))
    before = tree(folder)
    taken = await snapshots.take(session)
    assert taken is not None and taken.key.startswith(f"tenant-a/{session.id}/") and taken.key.endswith(".tar.zst")
    assert (taken.size, taken.sha256) == file_digest(backend.root / taken.key)
    shutil.rmtree(folder)  # another machine: nothing local
    assert await snapshots.restore(session) is not None
    restored = tree(folder)
    # Next to the files: which snapshot this copy came from (a runner that gets a session back compares it).
    marker = restored.pop(".snapshot")
    assert isinstance(marker, tuple) and marker[0] == taken.id.encode()
    assert restored == before
    assert os.readlink(folder / "workspace" / "outside-link") == "/etc/passwd"


async def test_a_damaged_snapshot_is_a_clear_error_and_the_local_copy_stays(
    store: Store, data: DataDir, backend: LocalSnapshotStore
) -> None:
    snapshots = service(store, data, backend)
    session = await new_session(store, data)
    taken = await snapshots.take(session)
    assert taken is not None
    object_path = backend.root / taken.key
    damaged = bytearray(object_path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    object_path.write_bytes(bytes(damaged))
    folder = data.session("tenant-a", str(session.id))
    (folder / "workspace" / "newer.txt").write_text("only here")
    before = tree(folder)
    with pytest.raises(SnapshotError, match=f"snapshot {taken.id} of session {session.id} .* is damaged"):
        await snapshots.restore(session)
    assert tree(folder) == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


async def test_a_missing_snapshot_is_a_clear_error_and_the_local_copy_stays(
    store: Store, data: DataDir, backend: LocalSnapshotStore
) -> None:
    snapshots = service(store, data, backend)
    session = await new_session(store, data)
    taken = await snapshots.take(session)
    assert taken is not None
    await backend.delete(taken.key)
    folder = data.session("tenant-a", str(session.id))
    before = tree(folder)
    with pytest.raises(SnapshotError, match="is missing from the snapshot store") as raised:
        await snapshots.restore(session)
    assert raised.value.status_code == 503 and raised.value.fields["snapshot_id"] == taken.id
    assert tree(folder) == before


async def test_an_upload_counts_only_once_recorded(store: Store, data: DataDir, backend: LocalSnapshotStore) -> None:
    """The database row is the commit: an archive uploaded but never recorded (a crash in between) is not
    restored, whatever it holds."""
    snapshots = service(store, data, backend)
    session = await new_session(store, data)
    assert await snapshots.take(session) is not None
    stray = data.root / "stray.tar.zst"
    stray.write_bytes(b"half-written")
    await backend.put(f"tenant-a/{session.id}/{uuid.uuid4().hex}.tar.zst", stray)
    folder = data.session("tenant-a", str(session.id))
    before = tree(folder)
    shutil.rmtree(folder)
    await snapshots.restore(session)
    assert tree(folder) == before


async def test_a_server_that_no_longer_runs_the_session_cannot_commit(
    store: Store, data: DataDir, backend: LocalSnapshotStore
) -> None:
    """Its copy is older than the server's that took the session over: recording it would lose that one's work."""
    session = await new_session(store, data, runner=OTHER)
    stale = service(store, data, backend, server_id=ME)
    assert await stale.take(session) is None
    assert await store.latest_snapshot(session.id) is None
    assert await backend.list("tenant-a/") == []


async def test_only_the_two_latest_snapshots_are_kept(store: Store, data: DataDir, backend: LocalSnapshotStore) -> None:
    snapshots = service(store, data, backend)
    session = await new_session(store, data)
    taken = [await snapshots.take(session) for _ in range(3)]
    assert [t.generation for t in taken if t is not None] == [1, 2, 3]
    keys = await backend.list(f"tenant-a/{session.id}/")
    assert sorted(keys) == sorted(t.key for t in taken[1:] if t is not None)
    latest = await store.latest_snapshot(session.id)
    assert latest is not None and latest.id == taken[2].id  # type: ignore[union-attr]


def hostile_archive(entries: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info in entries:
            data = contents.get(info.name)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([entry("workspace", tarfile.DIRTYPE), entry("workspace/../../escaped")], "leaves its folder"),
        ([entry("/tmp/absolute-escape")], "absolute"),
        (
            [
                entry("workspace", tarfile.DIRTYPE),
                entry("workspace/out", tarfile.SYMTYPE, "/tmp"),
                entry("workspace/out/x"),
            ],
            "goes through a non-directory",
        ),
        ([entry("workspace", tarfile.DIRTYPE), entry("workspace/dev", tarfile.CHRTYPE)], "special file"),
        ([entry("workspace", tarfile.DIRTYPE), entry("workspace/hard", tarfile.LNKTYPE, "/etc/passwd")], "link"),
    ],
)
async def test_a_hostile_snapshot_is_refused_and_writes_nothing_outside(
    store: Store,
    data: DataDir,
    backend: LocalSnapshotStore,
    tmp_path: Path,
    entries: list[tarfile.TarInfo],
    reason: str,
) -> None:
    """Whoever can write to the bucket must not be able to make the server write outside the session."""
    snapshots = service(store, data, backend)
    session = await new_session(store, data)
    blob = hostile_archive(entries, {e.name: b"pwned" for e in entries if e.type == tarfile.REGTYPE})
    (tmp_path / "hostile").write_bytes(blob)
    key = f"tenant-a/{session.id}/hostile.tar.zst"
    await backend.put(key, tmp_path / "hostile")
    size, sha256 = file_digest(tmp_path / "hostile")
    row = Snapshot(
        id="hostile",
        tenant_id="tenant-a",
        session_id=session.id,
        generation=0,
        key=key,
        size=size,
        sha256=sha256,
        server_id=ME,
        created_at=utcnow(),
    )
    assert await store.commit_snapshot(row, ME)
    folder = data.session("tenant-a", str(session.id))
    before = tree(folder)
    with pytest.raises(SnapshotError, match=reason):
        await snapshots.restore(session)
    assert tree(folder) == before
    assert not Path("/tmp/absolute-escape").exists() and not (tmp_path / "escaped").exists()
    assert not (data.root / "sessions" / "escaped").exists()


async def test_a_copy_is_current_only_if_it_holds_the_latest_snapshot(
    store: Store, data: DataDir, backend: LocalSnapshotStore, tmp_path: Path
) -> None:
    """A runner that ran a session, lost it to another runner and gets it back must restore, not reuse its copy."""
    here = service(store, data, backend)
    session = await new_session(store, data)
    assert await here.is_current(session)  # no snapshot anywhere: the local copy is all there is
    await here.take(session)
    assert await here.is_current(session)  # saved from this copy
    # The session moves to another machine (its own data dir), which snapshots its newer state.
    await store.update_session(session.id, runner_id="elsewhere")
    session.runner_id = "elsewhere"
    other_data = DataDir(tmp_path / "other")
    other_data.prepare()
    there = service(store, other_data, backend, server_id="elsewhere")
    await there.restore(session)
    (other_data.workspace("tenant-a", str(session.id)) / "newer.txt").write_text("from elsewhere")
    await there.take(session)
    assert not await here.is_current(session)  # this machine's copy is older than the latest snapshot
    await here.restore(session)
    assert await here.is_current(session)
    assert (data.workspace("tenant-a", str(session.id)) / "newer.txt").read_text() == "from elsewhere"
