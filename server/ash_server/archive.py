"""Session folders as tar streams, read and written by the server without ever following the agent's symlinks.

The server reads and writes session folders with more rights than the agent (root, when sandboxes run as their own
user), while the agent may still be changing them. So trees are walked with `os.fwalk` (directory fds, symlinks
never followed, even one swapped in during the walk) and files are opened relative to their directory with
`O_NOFOLLOW`: a symlink to `/etc/shadow` is archived as a symlink, never as its target. Extraction goes into a
folder no sandbox can see, refuses absolute paths, `..` and anything that would write through a symlink, and
never creates devices, FIFOs or setuid files.

Used by snapshots (tar + zstd of `workspace/` and `home/`), by fork (a copy of a session folder) and by the
workspace download and upload of the API (tar.gz).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import Invalid, PayloadTooLarge

COPY_CHUNK = 1024 * 1024
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing found under a root: a directory, a regular file or a symlink (nothing else is kept)."""

    path: str  # relative, POSIX
    kind: str  # "dir" | "file" | "symlink"
    mode: int
    mtime: float
    size: int = 0
    target: str = ""  # of a symlink
    dir_fd: int = -1  # where `name` lives, valid only while the walk is at this entry
    name: str = ""


def walk(root: Path) -> Iterator[Entry]:
    """Every directory, regular file and symlink under `root` (not `root` itself), parents before children."""
    if root.is_symlink() or not root.is_dir():
        return
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        real_dirs = []
        for name in sorted(dirnames + filenames):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            rel = prefix + name
            if stat.S_ISDIR(st.st_mode):
                real_dirs.append(name)
                yield Entry(rel, "dir", stat.S_IMODE(st.st_mode), st.st_mtime)
            elif stat.S_ISREG(st.st_mode):
                yield Entry(rel, "file", stat.S_IMODE(st.st_mode), st.st_mtime, st.st_size, dir_fd=dirfd, name=name)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(name, dir_fd=dirfd)
                except OSError:
                    continue
                yield Entry(rel, "symlink", 0o777, st.st_mtime, target=target)
        # Descend into real directories only (fwalk would skip swapped-in symlinks anyway).
        dirnames[:] = [d for d in dirnames if d in real_dirs]


def open_entry(entry: Entry) -> int | None:
    """An fd of the regular file `entry` names, or None if it is no longer one (swapped or removed)."""
    try:
        fd = os.open(entry.name, _OPEN_FILE, dir_fd=entry.dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


class _Exactly:
    """A file read as exactly `size` bytes: cut if it grew since it was measured, zero-padded if it shrank. The
    agent may be writing it; a tar entry must hold the size its header says."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n < 0 else min(n, self._left)
        data = os.read(self._fd, want)
        if not data:
            data = b"\0" * want
        self._left -= len(data)
        return data


def add_tree(tar: tarfile.TarFile, root: Path, arcname: str) -> None:
    """Append `root` to `tar` under `arcname/` (at the top with ""): directories, regular files and symlinks
    (as links)."""
    if arcname:
        top = tarfile.TarInfo(arcname)
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
    prefix = f"{arcname}/" if arcname else ""
    for entry in walk(root):
        info = tarfile.TarInfo(prefix + entry.path)
        info.mode, info.mtime = entry.mode, int(entry.mtime)
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        elif entry.kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, entry.target
            tar.addfile(info)
        else:
            fd = open_entry(entry)
            if fd is None:
                continue
            try:
                info.size = os.fstat(fd).st_size
                tar.addfile(info, _Exactly(fd, info.size))
            finally:
                os.close(fd)


def pack(sources: Sequence[tuple[str, Path]], out: IO[bytes], *, gzip: bool = False) -> None:
    """Write a tar stream of the `(arcname, folder)` pairs to `out` (which may compress it)."""
    with tarfile.open(fileobj=out, mode="w|gz" if gzip else "w|", format=tarfile.PAX_FORMAT) as tar:
        for arcname, root in sources:
            add_tree(tar, root, arcname)


# -- Extraction -------------------------------------------------------------------------------------------------


def member_path(name: str) -> PurePosixPath:
    """The relative path of an archive member; Invalid for absolute paths, `..` and empty names."""
    path = PurePosixPath(name)
    if not name or "\x00" in name or path.is_absolute() or ".." in path.parts:
        raise Invalid(f"archive entry {name!r} is absolute or leaves its folder", entry=name)
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts)


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _parents_ready(dest: Path, rel: PurePosixPath) -> Path:
    """Create the parents of `rel` under `dest` as real directories; refuse to go through anything else."""
    current = dest
    for part in rel.parts[:-1]:
        current = current / part
        if not _real_dir(current):
            if os.path.lexists(current):
                raise Invalid(f"archive entry {rel.as_posix()!r} goes through a non-directory", entry=str(rel))
            current.mkdir(mode=0o755)
    return current / rel.parts[-1]


def extract(
    tar: tarfile.TarFile,
    dest: Path,
    *,
    allow_symlinks: bool = True,
    max_bytes: int | None = None,
    max_entries: int = 1_000_000,
) -> int:
    """Extract a tar stream into `dest`, a fresh folder nothing else writes to. Returns the bytes written.

    Directories, regular files and (if allowed) symlinks are created; a symlink is never followed, so an entry
    behind one is refused. Hard links, devices and FIFOs are refused; permission bits are kept without setuid.
    """
    total = 0
    count = 0
    for member in tar:
        count += 1
        if count > max_entries:
            raise PayloadTooLarge(f"archive has more than {max_entries} entries", limit=max_entries)
        rel = member_path(member.name)
        if not rel.parts:
            continue
        if member.isdir():
            target = _parents_ready(dest, rel)
            if not _real_dir(target):
                target.mkdir(mode=0o755)
            os.chmod(target, (member.mode & 0o777) | 0o700)
            continue
        if member.issym() and allow_symlinks:
            target = _parents_ready(dest, rel)
            if os.path.lexists(target):
                raise Invalid(f"archive entry {member.name!r} appears twice", entry=member.name)
            os.symlink(member.linkname, target)
            continue
        if not member.isreg():
            kind = "link" if (member.issym() or member.islnk()) else "special file"
            raise Invalid(f"archive entry {member.name!r} is a {kind}, which is not accepted", entry=member.name)
        total += member.size
        if max_bytes is not None and total > max_bytes:
            raise PayloadTooLarge(f"archive expands to more than {max_bytes} bytes", limit=max_bytes)
        target = _parents_ready(dest, rel)
        source = tar.extractfile(member)
        assert source is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while chunk := source.read(COPY_CHUNK):
                os.write(fd, chunk)
            os.fchmod(fd, member.mode & 0o777)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    return total


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a folder the agent may be changing into `dest` (which must not exist): what fork does.

    Same rules as an archive: symlinks copied as symlinks, only directories and regular files otherwise.
    """
    dest.mkdir(mode=0o755)
    for entry in walk(source):
        target = dest / entry.path
        if not _real_dir(target.parent):
            continue  # its directory vanished from the walk
        if entry.kind == "dir":
            target.mkdir()
            os.chmod(target, entry.mode | 0o700)
        elif entry.kind == "symlink":
            os.symlink(entry.target, target)
        else:
            fd = open_entry(entry)
            if fd is None:
                continue
            try:
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    os.fchmod(out, entry.mode)
                    while True:
                        try:
                            copied = os.sendfile(out, fd, None, COPY_CHUNK * 8)
                        except OSError as exc:
                            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                                raise
                            copied = os.write(out, os.read(fd, COPY_CHUNK))
                        if not copied:
                            break
                finally:
                    os.close(out)
            finally:
                os.close(fd)
        with contextlib.suppress(OSError):
            os.utime(target, (entry.mtime, entry.mtime), follow_symlinks=False)
