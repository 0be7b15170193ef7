"""Backups: a server's database and data dir in one archive (`ash backup <file>`, `ash restore <file>`).

The archive is a gzipped tar, private to its owner (it holds the server secret and key hashes):

    ash-backup.json       format, Ash version, time, engine, schema revision, counts
    database/ash.db       SQLite: a consistent copy made with SQLite's online backup API (the server may run)
    database/ash.pgdump   PostgreSQL: `pg_dump --format=custom`, one consistent snapshot
    data/...              the data dir: agents/, sessions/ (workspaces and the SDK's transcripts), secret-key, api-key

The database is copied first and the files after it, so a backup taken while sessions run has every message of
the database in its transcripts. For a copy of the files as of one instant, stop the server first. Restoring
needs an empty data dir and (PostgreSQL) an empty database; a backup restores onto the engine it was taken from.
`ASH_CREDENTIAL_KEY` is not in the data dir: keep it with the backup, or stored credentials cannot be decrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import inspect, make_url, text

from . import __version__
from .errors import AshError
from .settings import Settings
from .store.database import create_engine, is_sqlite, redacted, wait_for_database
from .store.models import utcnow

FORMAT = 1
MANIFEST = "ash-backup.json"
SQLITE_MEMBER = "database/ash.db"
PGDUMP_MEMBER = "database/ash.pgdump"
DATA_PREFIX = "data"
# Not data: the live database files (copied through the backup API instead), live sandboxes' sockets, the
# background server's pid and log.
EXCLUDED = frozenset(
    {"ash.db", "ash.db-wal", "ash.db-shm", "ash.db-journal", "ash.db.migrate-lock", "sandboxes", "server.pid"}
)
EXCLUDED_SUFFIXES = (".log", ".tmp")
COUNTED = ("tenants", "api_keys", "agents", "sessions", "messages")
# Members are checked one by one (_safe_member) before extraction; Pythons with extraction filters (3.11.4+)
# must not apply theirs on top (the `data` filter would refuse the symlinks agents may hold).
TRUSTED: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


class BackupError(AshError):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Summary:
    engine: str
    revision: str | None
    counts: dict[str, int]
    files: int


# -- Database ------------------------------------------------------------------------------------------------


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.effective_database_url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return str(candidates[-1])
    raise BackupError(f"{name} is needed to back up or restore PostgreSQL (install postgresql-client)")


def _pg_environment(settings: Settings) -> dict[str, str]:
    """libpq's variables for the database of ASH_DATABASE_URL: the password never appears on a command line."""
    url = make_url(settings.effective_database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    values = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password if isinstance(url.password, str) else None,
        "PGDATABASE": url.database,
    }
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        values["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(ssl.lower(), ssl)
    env.update({k: v for k, v in values.items() if v})
    return env


def _run_pg(argv: list[str], settings: Settings) -> None:
    result = subprocess.run(argv, env=_pg_environment(settings), capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")


async def _database_facts(url: str) -> tuple[str | None, dict[str, int], int]:
    """Schema revision, row counts of the tables people care about, and how many tables there are."""
    engine = create_engine(url)
    try:
        async with engine.connect() as db:
            tables = set(await db.run_sync(lambda conn: inspect(conn).get_table_names()))
            revision = None
            if "alembic_version" in tables:
                revision = (await db.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            counts = {}
            for table in COUNTED:
                if table in tables:
                    counts[table] = int((await db.execute(text(f"SELECT count(*) FROM {table}"))).scalar() or 0)  # noqa: S608 - fixed names
            return revision, counts, len(tables)
    finally:
        await engine.dispose()


# -- Files ---------------------------------------------------------------------------------------------------


def _excluded(name: str) -> bool:
    return name in EXCLUDED or name.endswith(EXCLUDED_SUFFIXES)


def _data_entries(data_dir: Path) -> Iterator[tuple[Path, str]]:
    """(path, name in the archive) for everything worth keeping, parents before children; nothing followed."""
    for top in sorted(data_dir.iterdir()):
        if _excluded(top.name):
            continue
        yield top, f"{DATA_PREFIX}/{top.name}"
        if top.is_dir() and not top.is_symlink():
            for folder, dirs, files in os.walk(top):
                dirs.sort()
                for name in [*dirs, *sorted(files)]:
                    path = Path(folder) / name
                    yield path, f"{DATA_PREFIX}/{path.relative_to(data_dir).as_posix()}"


def _add(archive: tarfile.TarFile, path: Path, name: str) -> bool:
    """Add one entry (a folder without its contents); skip what vanished meanwhile and what is not a plain
    file, folder or link (sockets, fifos, devices)."""
    try:
        info = archive.gettarinfo(str(path), name)
    except FileNotFoundError:
        return False
    if info is None or not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
        return False
    if info.isfile():
        try:
            with path.open("rb") as handle:
                archive.addfile(info, handle)
        except FileNotFoundError:
            return False
    else:
        archive.addfile(info)
    return True


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(utcnow().timestamp())
    archive.addfile(info, io.BytesIO(data))


# -- Backup --------------------------------------------------------------------------------------------------


def backup(settings: Settings, target: Path) -> Summary:
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise BackupError(f"no data dir at {data_dir} (set ASH_DATA_DIR to the server's)")
    url = settings.effective_database_url
    sqlite = is_sqlite(url)
    asyncio.run(wait_for_database(url, timeout_s=settings.database_startup_timeout_ms / 1000))
    target = target.expanduser().absolute()
    partial = target.with_name(f".{target.name}.partial")
    with tempfile.TemporaryDirectory(prefix="ash-backup-") as scratch:
        # 1. The database, as one consistent snapshot.
        if sqlite:
            source = _sqlite_path(settings)
            if not source.exists():
                raise BackupError(f"no database at {source}")
            dump = Path(scratch) / "ash.db"
            with contextlib.closing(sqlite3.connect(source)) as live, contextlib.closing(sqlite3.connect(dump)) as copy:
                live.backup(copy)  # the online backup API: consistent while the server writes
            revision, counts, _ = asyncio.run(_database_facts(f"sqlite+aiosqlite:///{dump}"))
        else:
            dump = Path(scratch) / "ash.pgdump"
            _run_pg(
                [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "-f", str(dump)], settings
            )
            revision, counts, _ = asyncio.run(_database_facts(url))
        manifest = {
            "format": FORMAT,
            "ashVersion": __version__,
            "createdAt": utcnow().isoformat(),
            "engine": "sqlite" if sqlite else "postgresql",
            "revision": revision,
            "counts": counts,
        }
        # 2. The files, after the database.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        files = 0
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as archive:
                _add_bytes(archive, MANIFEST, json.dumps(manifest, indent=2).encode())
                archive.add(str(dump), SQLITE_MEMBER if sqlite else PGDUMP_MEMBER)
                for path, name in _data_entries(data_dir):
                    files += _add(archive, path, name)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return Summary(manifest["engine"], revision, counts, files)  # type: ignore[arg-type]


# -- Restore -------------------------------------------------------------------------------------------------


def _refuse(member: tarfile.TarInfo, why: str) -> BackupError:
    return BackupError(f"refusing archive member {member.name!r}: {why}; nothing was restored")


def _plan(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The data members to extract, renamed to data-dir-relative paths, every one checked before anything is
    written: plain files, folders and links only; nothing outside the data dir or under a link of the archive.
    Symlinks keep their targets (agents and workspaces may hold links pointing anywhere: they were copied as links,
    and the files API and sandboxes never follow them out); hard links must point at a file of the archive."""
    prefix = DATA_PREFIX + "/"
    planned: list[tarfile.TarInfo] = []
    names: set[PurePosixPath] = set()
    links: set[PurePosixPath] = set()
    for member in archive.getmembers():
        if not member.name.startswith(prefix):
            continue
        name = PurePosixPath(member.name[len(prefix) :])
        if name.is_absolute() or ".." in name.parts:
            raise _refuse(member, "it leads outside the data dir")
        if not name.parts:
            continue
        if any(parent in links for parent in name.parents):
            raise _refuse(member, "it would be written through a link")
        if member.issym():
            links.add(name)
        elif member.islnk():
            target = PurePosixPath(member.linkname[len(prefix) :]) if member.linkname.startswith(prefix) else None
            if target is None or target not in names or target in links:
                raise _refuse(member, "a hard link to something that is not a file of the backup")
            member.linkname = str(target)
        elif not (member.isfile() or member.isdir()):
            continue  # never written by `ash backup`: no devices, fifos or sockets
        member.name = str(name)
        member.mode &= 0o1777 if member.isdir() else 0o777  # no setuid or setgid bits
        names.add(name)
        planned.append(member)
    return planned


def _restore_owners(destination: Path, planned: list[tarfile.TarInfo]) -> None:
    """Give every restored file its owner from the archive (numeric ids), as tarfile does for root only. The server
    of the image and of the systemd unit is not root but holds CAP_CHOWN, and a session's folder (0700) must go back
    to the sandbox user, or its next sandbox cannot reach its workspace (found restoring into a fresh compose
    stack). Without the capability (an operator restoring `ash start`'s own folder) the files stay the caller's."""
    if os.geteuid() == 0:
        return  # tarfile has done it
    for member in planned:
        try:
            os.chown(destination / member.name, member.uid, member.gid, follow_symlinks=False)
        except PermissionError:
            return  # no CAP_CHOWN: nothing else will succeed either
        except FileNotFoundError:
            continue


def _inside(destination: Path, member: tarfile.TarInfo) -> None:
    """Checked again on disk, just before writing: the parent folder really is inside the data dir."""
    parent = os.path.realpath(destination / PurePosixPath(member.name).parent)
    if not (parent == str(destination) or parent.startswith(str(destination) + os.sep)):
        raise BackupError(f"refusing archive member {member.name!r}: it would be written through a link")


@contextlib.contextmanager
def _open_archive(source: Path) -> Iterator[tarfile.TarFile]:
    try:
        archive = tarfile.open(source, mode="r:gz")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"cannot read {source}: {exc}") from exc
    with archive:
        yield archive


def _manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    try:
        handle = archive.extractfile(MANIFEST)
    except KeyError:
        handle = None
    if handle is None:
        raise BackupError(f"not an Ash backup (no {MANIFEST})")
    manifest: dict[str, Any] = json.loads(handle.read())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unsupported backup format {manifest.get('format')!r} (this Ash reads format {FORMAT})")
    return manifest


def _require_empty_data_dir(data_dir: Path) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"the data dir {data_dir} is not empty: restore into an empty (or new) data dir")


def restore(settings: Settings, source: Path) -> Summary:
    data_dir = settings.data_dir
    url = settings.effective_database_url
    sqlite = is_sqlite(url)
    with _open_archive(source) as archive:
        manifest = _manifest(archive)
        engine = "sqlite" if sqlite else "postgresql"
        if manifest["engine"] != engine:
            raise BackupError(
                f"this backup holds a {manifest['engine']} database and ASH_DATABASE_URL points at {engine}: restore "
                f"onto the engine the backup was taken from"
            )
        _require_empty_data_dir(data_dir)
        planned = _plan(archive)  # refuses a damaged or hostile archive before anything is written
        if not sqlite:
            asyncio.run(wait_for_database(url, timeout_s=settings.database_startup_timeout_ms / 1000))
            if asyncio.run(_database_facts(url))[2]:
                raise BackupError(f"the database {redacted(url)} is not empty: restore into an empty database")
        data_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        destination = data_dir.resolve()
        # 1. The files.
        for member in planned:
            _inside(destination, member)
            archive.extract(member, destination, set_attrs=True, numeric_owner=True, **TRUSTED)
        _restore_owners(destination, planned)
        files = len(planned)
        # 2. The database.
        if sqlite:
            target = _sqlite_path(settings)
            handle = archive.extractfile(SQLITE_MEMBER)
            if handle is None:
                raise BackupError(f"the backup has no {SQLITE_MEMBER}")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(handle, out)
        else:
            handle = archive.extractfile(PGDUMP_MEMBER)
            if handle is None:
                raise BackupError(f"the backup has no {PGDUMP_MEMBER}")
            with tempfile.NamedTemporaryFile(prefix="ash-restore-", suffix=".pgdump") as dump:
                shutil.copyfileobj(handle, dump)
                dump.flush()
                os.chmod(dump.name, stat.S_IRUSR | stat.S_IWUSR)
                _run_pg(
                    [
                        *(_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"),
                        *("--dbname", make_url(url).database or "", dump.name),
                    ],
                    settings,
                )
    revision, counts, _ = asyncio.run(_database_facts(url))
    return Summary(engine, revision, counts, files)
