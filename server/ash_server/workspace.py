"""A session's workspace read from the server's side: listed and read without following the agent's symlinks.

The agent may change its workspace while the server reads it, and the server runs with more rights than the
agent (root, when sandboxes run as their own user). So paths are checked (`paths.confine`) and then opened one
component at a time without following symlinks: a symlink swapped in after the check makes the read fail
instead of leading out of the workspace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .errors import Invalid, NotFound, PayloadTooLarge
from .paths import confine

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
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError as exc:
        raise NotFound("the session has no workspace") from exc
    try:
        for part in rel.parts[:-1]:
            parent, fd = fd, -1
            try:
                fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ENOTDIR and _is_symlink(part, parent):
                    raise Invalid(f"path escapes its folder: {raw!r}", path=raw) from exc
                raise
            finally:
                os.close(parent)
        # O_NONBLOCK: a FIFO the agent left there must not hang the server.
        return os.open(rel.parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise Invalid(f"path escapes its folder: {raw!r}", path=raw) from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"no file {raw!r} in the workspace", path=raw) from exc
        raise
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
