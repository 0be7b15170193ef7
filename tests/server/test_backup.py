"""Backup archives in-process (SQLite): what goes in, what comes back, and what restore refuses to write."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ash_server import backup as backups
from ash_server import tenants
from ash_server.settings import Settings


def settings_for(data_dir: Path, **values: str) -> Settings:
    return Settings(data_dir=data_dir, **values)  # type: ignore[arg-type]


def make_server_data(data_dir: Path) -> None:
    async def create() -> None:
        async with tenants.admin_store(settings_for(data_dir)) as (store, auth):
            await tenants.create_tenant(store, auth, "acme")

    asyncio.run(create())
    agent = data_dir / "agents" / "acme" / "helper"
    agent.mkdir(parents=True)
    (agent / "CLAUDE.md").write_text("prompt")
    (agent / "hostname").symlink_to("/etc/hostname")  # agents may hold links pointing anywhere
    transcript = data_dir / "sessions" / "acme" / "s1" / "home" / ".claude" / "projects"
    transcript.mkdir(parents=True)
    (transcript / "t.jsonl").write_text('{"type": "user"}\n')
    (data_dir / "sandboxes" / "acme" / "sbx-1").mkdir(parents=True)
    (data_dir / "sandboxes" / "acme" / "sbx-1" / "bridge.json").write_text("{}")
    (data_dir / "server.log").write_text("log")
    os.mkfifo(data_dir / "sessions" / "acme" / "s1" / "fifo")


def test_a_backup_restores_into_an_empty_data_dir(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    make_server_data(source)
    archive = tmp_path / "backup.tar.gz"
    made = backups.backup(settings_for(source), archive)
    assert made.engine == "sqlite" and made.counts["tenants"] == 1 and made.counts["api_keys"] == 1
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[:2] == ["ash-backup.json", "database/ash.db"]
    assert "data/secret-key" in names and "data/agents/acme/helper/hostname" in names
    assert not [n for n in names if "sandboxes" in n or n.endswith((".log", "fifo", "ash.db-wal"))]

    restored = backups.restore(settings_for(target), archive)
    assert restored.counts == made.counts and restored.revision == made.revision
    assert (target / "secret-key").read_text() == (source / "secret-key").read_text()
    assert (target / "agents" / "acme" / "helper" / "CLAUDE.md").read_text() == "prompt"
    assert os.readlink(target / "agents" / "acme" / "helper" / "hostname") == "/etc/hostname"
    assert (target / "sessions" / "acme" / "s1" / "home" / ".claude" / "projects" / "t.jsonl").exists()
    assert (target / "ash.db").stat().st_mode & 0o777 == 0o600

    with pytest.raises(backups.BackupError, match="not empty"):
        backups.restore(settings_for(target), archive)


def test_restore_needs_the_engine_the_backup_was_taken_on(tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_server_data(source)
    archive = tmp_path / "backup.tar.gz"
    backups.backup(settings_for(source), archive)
    postgres = settings_for(tmp_path / "target", database_url="postgresql://ash@127.0.0.1:1/ash")
    with pytest.raises(backups.BackupError, match="holds a sqlite database"):
        backups.restore(postgres, archive)


def evil_archive(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        manifest = json.dumps({"format": backups.FORMAT, "engine": "sqlite"}).encode()
        info = tarfile.TarInfo(backups.MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([file_member("data/../escape")], "outside the data dir"),
        ([link_member("data/out", "/tmp"), file_member("data/out/evil")], "through a link"),
        ([link_member("data/passwd", "/etc/passwd", tarfile.LNKTYPE)], "hard link"),
        ([link_member("data/passwd", "data/../../etc/passwd", tarfile.LNKTYPE)], "hard link"),
    ],
)
def test_restore_refuses_to_write_outside_the_data_dir(
    tmp_path: Path, members: list[tarfile.TarInfo], reason: str
) -> None:
    archive = evil_archive(tmp_path / "evil.tar.gz", file_member("data/fine"), *members)
    with pytest.raises(backups.BackupError, match=reason):
        backups.restore(settings_for(tmp_path / "target"), archive)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "target").exists()  # refused before anything was written


def test_hard_links_come_back_as_hard_links(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    make_server_data(source)
    workspace = source / "sessions" / "acme" / "s1" / "workspace"
    workspace.mkdir()
    (workspace / "a").write_text("shared")
    os.link(workspace / "a", workspace / "b")
    backups.backup(settings_for(source), tmp_path / "backup.tar.gz")
    backups.restore(settings_for(target), tmp_path / "backup.tar.gz")
    restored = target / "sessions" / "acme" / "s1" / "workspace"
    assert (restored / "b").read_text() == "shared"
    assert (restored / "a").stat().st_ino == (restored / "b").stat().st_ino


def test_what_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("not a tar")
    with pytest.raises(backups.BackupError, match="cannot read"):
        backups.restore(settings_for(tmp_path / "target"), tmp_path / "junk")
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    with pytest.raises(backups.BackupError, match="not an Ash backup"):
        backups.restore(settings_for(tmp_path / "target"), tmp_path / "empty.tar.gz")
