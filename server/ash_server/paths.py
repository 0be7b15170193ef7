"""Confinement of user- and agent-supplied paths to a root directory, and the data dir layout."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath

from .errors import Conflict, Invalid

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")


# What Linux file systems take (NAME_MAX, PATH_MAX): longer would fail with ENAMETOOLONG further in.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096
# How often confine() resolves a path that changes under it (an agent swapping symlinks) before giving up.
RESOLVE_ATTEMPTS = 3


def relative_path(raw: str) -> PurePosixPath:
    """Validate a relative path from a request: no absolute paths, no `..`, no NUL, nothing empty or too long."""
    if not raw or "\x00" in raw or "\\" in raw:
        raise Invalid(f"invalid path {raw!r}", path=raw)
    if len(raw.encode(errors="surrogateescape")) > PATH_MAX_BYTES:
        raise Invalid(f"path is longer than {PATH_MAX_BYTES} bytes", path=raw[:200])
    path = PurePosixPath(raw)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or raw.startswith("~"):
        raise Invalid(f"path must be relative and stay inside its folder: {raw!r}", path=raw)
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise Invalid(f"invalid path {raw!r}", path=raw)
    if any(len(p.encode(errors="surrogateescape")) > NAME_MAX_BYTES for p in parts):
        raise Invalid(f"a path component is longer than {NAME_MAX_BYTES} bytes", path=raw[:200])
    return PurePosixPath(*parts)


def confine(root: Path, raw: str) -> Path:
    """The real location of `raw` under `root`, refusing anything (including symlinks) that leads outside."""
    rel = relative_path(raw)
    root_real = root.resolve()
    target = _resolve(root_real / rel, raw)
    if target != root_real and root_real not in target.parents:
        raise Invalid(f"path escapes its folder: {raw!r}", path=raw)
    return target


def _resolve(path: Path, raw: str) -> Path:
    """`path.resolve()`, told apart: a symlink loop is the request's fault (400); links changing while they are
    read (an agent swapping them: EINVAL, ENOENT mid-walk) are retried, then a 409 to try again."""
    for _ in range(RESOLVE_ATTEMPTS - 1):
        try:
            return _resolve_once(path, raw)
        except OSError:
            continue
    try:
        return _resolve_once(path, raw)
    except OSError as exc:
        raise Conflict(f"path kept changing while it was resolved: {raw!r}; try again", path=raw) from exc


def _resolve_once(path: Path, raw: str) -> Path:
    try:
        return path.resolve()
    except RuntimeError as exc:  # a symlink loop (Python 3.11)
        raise Invalid(f"path loops through symlinks: {raw!r}", path=raw) from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
            raise Invalid(f"path cannot be resolved ({os.strerror(exc.errno)}): {raw!r}", path=raw) from exc
        raise


def is_within(path: Path, roots: list[Path]) -> bool:
    real = path.resolve()
    return any(real == r.resolve() or r.resolve() in real.parents for r in roots)


class DataDir:
    """The data dir layout: ash.db, agents/<tenant>/<name>, sessions/<tenant>/<id>/{workspace,home},
    sandboxes/<tenant>/<id>."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        # 0711: sandbox users may pass through to their own session folder but list nothing.
        for folder in (self.root, self.root / "agents", self.root / "sessions", self.root / "sandboxes"):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o711)
        os.chmod(self.root / "agents", 0o700)
        self.sources.mkdir(mode=0o750, exist_ok=True)

    @property
    def sources(self) -> Path:
        """Agent folders an operator puts here can be deployed by `path` (the default ASH_AGENT_ROOTS)."""
        return self.root / "sources"

    def agent(self, tenant_id: str, name: str) -> Path:
        return self.root / "agents" / tenant_id / name

    def session(self, tenant_id: str, session_id: str) -> Path:
        return self.root / "sessions" / tenant_id / session_id

    def make_session(self, tenant_id: str, session_id: str, owner: tuple[int, int] | None) -> Path:
        """Create the session's folder, reachable (not listable) on the way and owned by the sandbox user."""
        tenant_dir = self.root / "sessions" / tenant_id
        tenant_dir.mkdir(exist_ok=True)
        os.chmod(tenant_dir, 0o711)
        folder = tenant_dir / session_id
        folder.mkdir(mode=0o700)
        if owner is not None:
            os.chown(folder, *owner)
        return folder

    def server_id(self) -> str:
        """This server's id, stable across its restarts (kept in <data dir>/server-id): what marks the pool rows it
        owns and the sessions it runs, when servers share a database."""
        path = self.root / "server-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        value = "srv-" + secrets.token_hex(8)
        temp = path.with_name(f".server-id.{value}")
        temp.write_text(value + "\n")
        try:
            os.link(temp, path)  # first writer wins, if two processes race on one data dir
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        return path.read_text().strip()

    def workspace(self, tenant_id: str, session_id: str) -> Path:
        return self.session(tenant_id, session_id) / "workspace"

    def home(self, tenant_id: str, session_id: str) -> Path:
        return self.session(tenant_id, session_id) / "home"

    def sandbox(self, tenant_id: str, sandbox_id: str) -> Path:
        return self.root / "sandboxes" / tenant_id / sandbox_id

    def make_sandbox(self, tenant_id: str, sandbox_id: str) -> Path:
        """Create a sandbox's folder (its sockets and bridge config), private, under its tenant's."""
        tenant_dir = self.root / "sandboxes" / tenant_id
        tenant_dir.mkdir(exist_ok=True)
        os.chmod(tenant_dir, 0o711)
        folder = tenant_dir / sandbox_id
        folder.mkdir(mode=0o700)
        return folder


def chown_tree(root: Path, ids: tuple[int, int] | None) -> None:
    """Give a folder and everything in it to (uid, gid), links themselves rather than what they point to."""
    if ids is None:
        return
    uid, gid = ids
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


async def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it, in a thread: a workspace can hold many thousands of files, and the event
    loop must not wait for them (a missing folder is fine)."""
    await asyncio.to_thread(shutil.rmtree, path, True)
