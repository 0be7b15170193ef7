"""A session's workspace from the server's side: listed, read, written and deleted without following the agent's
symlinks.

The agent may change its workspace while the server works on it, and the server runs with more rights than the
agent (root, when sandboxes run as their own user). So paths are checked (`paths.confine`) and then opened one
component at a time without following symlinks: a symlink swapped in after the check makes the operation fail
instead of leading out of the workspace. What the server writes belongs to the sandbox user.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, NoReturn

from . import archive
from .errors import Invalid, NotFound, PayloadTooLarge
from .paths import confine, relative_path

MAX_LISTED_FILES = 10_000
# Never listed: big and never useful to browse. Hidden ones are left out when the client asks.
ALWAYS_SKIP = frozenset({"node_modules", ".git", "__pycache__"})
HIDDEN_SKIP = frozenset({".cache", ".npm", ".pnpm-store", ".yarn", ".venv", "venv", ".tmp", "tmp"})


@dataclass(frozen=True, slots=True)
class WorkspaceFile:
    path: str
    size: int
    modified_at: datetime


def list_files(root: Path, *, include_hidden: bool = True) -> list[WorkspaceFile]:
    """Regular files under `root`, relative paths sorted; symlinks are neither listed nor followed."""
    if root.is_symlink() or not root.is_dir():
        return []
    skip = ALWAYS_SKIP if include_hidden else ALWAYS_SKIP | HIDDEN_SKIP
    found: list[WorkspaceFile] = []
    # fwalk works on directory fds and does not follow symlinks, even one swapped in during the walk.
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            found.append(WorkspaceFile(rel, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
            if len(found) >= MAX_LISTED_FILES:
                return found
    return found


def read_file(root: Path, raw: str, *, max_bytes: int) -> bytes:
    """The content of the regular file `raw` under `root`; Invalid (400) for anything that leads outside it."""
    target = confine(root, raw)
    rel = PurePosixPath(target.relative_to(root.resolve()).as_posix())
    if not rel.parts:
        raise Invalid(f"{raw!r} is a directory, not a file", path=raw)
    fd = _open_beneath(root, rel, raw)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Invalid(f"{raw!r} is not a regular file", path=raw)
        if st.st_size > max_bytes:
            raise PayloadTooLarge(f"{raw!r} is {st.st_size} bytes; at most {max_bytes} can be read here", path=raw)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_beneath(root: Path, rel: PurePosixPath, raw: str) -> int:
    fd = _open_parent(root, rel, raw, None, create=False)
    try:
        # O_NONBLOCK: a FIFO the agent left there must not hang the server.
        return os.open(rel.parts[-1], os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        _refuse(exc, raw, symlink=exc.errno in (errno.ELOOP, errno.EMLINK))
    finally:
        os.close(fd)


# -- Writing ----------------------------------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _escape(raw: str) -> Invalid:
    return Invalid(f"path escapes its folder: {raw!r}", path=raw)


def _missing(raw: str) -> NotFound:
    return NotFound(f"File not found: no file {raw!r} in the workspace", path=raw)


def _refuse(exc: OSError, raw: str, *, symlink: bool) -> NoReturn:
    """Raise what a failed open of a component of `raw` means: a symlink in the way (`symlink`: following it could
    leave the folder) 400, a missing component 404, anything else as it is."""
    if symlink:
        raise _escape(raw) from exc
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        raise _missing(raw) from exc
    raise exc


def _open_parent(root: Path, rel: PurePosixPath, raw: str, owner: tuple[int, int] | None, *, create: bool) -> int:
    """An fd of the directory that holds `rel` under `root`, each component opened without following symlinks;
    missing ones are created (owned by `owner`) when `create`."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise NotFound("No workspace available for this session") from exc
    try:
        for part in rel.parts[:-1]:
            parent, fd = fd, -1
            try:
                try:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=parent)
                    if owner is not None:
                        os.chown(part, *owner, dir_fd=parent, follow_symlinks=False)
                    fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                # O_DIRECTORY | O_NOFOLLOW on a symlink: ELOOP or ENOTDIR (a plain file there is ENOTDIR too).
                link = exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_symlink(part, parent))
                _refuse(exc, raw, symlink=link)
            finally:
                os.close(parent)
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def write_file(root: Path, raw: str, data: bytes, owner: tuple[int, int] | None) -> None:
    """Create or replace the regular file `raw` under `root` (parents created as needed)."""
    rel = relative_path(raw)
    confine(root, raw)  # a clear 400 for a path that resolves outside; the opens below are what is safe
    parent = _open_parent(root, rel, raw, owner, create=True)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(rel.parts[-1], flags, 0o644, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _escape(raw) from exc
            if exc.errno in (errno.EISDIR, errno.ENXIO):
                raise Invalid(f"{raw!r} exists and is not a regular file", path=raw) from exc
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Invalid(f"{raw!r} exists and is not a regular file", path=raw)
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def delete_path(root: Path, raw: str) -> None:
    """Remove the file, symlink (not its target) or directory tree `raw` under `root`."""
    rel = relative_path(raw)
    parent = _open_parent(root, rel, raw, None, create=False)
    name = rel.parts[-1]
    try:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise _missing(raw) from exc
        if stat.S_ISDIR(st.st_mode):
            # rmtree with dir_fd works on descriptors and never follows a symlink, even one swapped in.
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
    finally:
        os.close(parent)


def extract_bundle(root: Path, bundle: bytes, owner: tuple[int, int] | None, *, max_bytes: int) -> int:
    """Write a tar.gz into the workspace: regular files and directories only. Every entry is checked before
    anything is written (a refused bundle changes nothing). Returns the number of files written."""
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                rel = archive.member_path(member.name)
                if member.issym() or member.islnk():
                    raise Invalid(f"bundle entry {member.name!r} is a link; links are not accepted", entry=member.name)
                if not (member.isreg() or member.isdir()):
                    raise Invalid(f"bundle entry {member.name!r} is not a file or directory", entry=member.name)
                if rel.parts:
                    confine(root, rel.as_posix())  # no `..`, and not through one of the agent's symlinks
                total += member.size if member.isreg() else 0
                if total > max_bytes:
                    raise PayloadTooLarge(f"bundle expands to more than {max_bytes} bytes", limit=max_bytes)
            written = 0
            for member in members:
                rel = archive.member_path(member.name)
                if not rel.parts:
                    continue
                if member.isdir():
                    make_dirs(root, rel, owner)
                    continue
                source = tar.extractfile(member)
                assert source is not None
                write_file(root, rel.as_posix(), source.read(), owner)
                written += 1
            return written
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise Invalid(f"bundle is not a valid tar.gz: {exc}") from exc


def make_dirs(root: Path, rel: PurePosixPath, owner: tuple[int, int] | None) -> None:
    """Create the directory `rel` under `root` and its parents, as `write_file` would."""
    os.close(_open_parent(root, rel / "_", rel.as_posix(), owner, create=True))


def pack_workspace(root: Path, out: IO[bytes]) -> None:
    """The workspace as a tar.gz written to `out`; symlinks stay symlinks."""
    if root.is_symlink() or not root.is_dir():
        raise NotFound("No workspace available for this session")
    archive.pack([("", root)], out, gzip=True)
