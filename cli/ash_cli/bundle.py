"""An agent folder as the files `ash deploy` uploads: relative posix paths and bytes.

Tooling folders are skipped; symlinks are followed only while they stay inside the folder (a link to ~/.ssh must
not be uploaded to a server).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from .errors import CliError

__all__ = ["SKIPPED_DIRS", "collect", "validate_name"]

SKIPPED_DIRS = frozenset({".git", "__pycache__", "node_modules", ".venv"})
SYSTEM_PROMPT_FILE = "CLAUDE.md"
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise CliError(f"invalid agent name {name!r}: use 1-255 letters, digits, '-' or '_' (pass --name)")
    return name


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def collect(folder: Path) -> list[tuple[str, bytes]]:
    """Every file of the agent folder, sorted by path. Raises CliError for a folder that is not an agent."""
    if not folder.exists():
        raise CliError(f"{folder} does not exist")
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder")
    if not (folder / SYSTEM_PROMPT_FILE).is_file():
        raise CliError(f"{folder} has no {SYSTEM_PROMPT_FILE}: an agent folder needs one (it is the agent's prompt)")
    root = folder.resolve()
    files: list[tuple[str, bytes]] = []
    _visit(root, root, PurePosixPath(), {root}, files)
    return sorted(files)


def _visit(root: Path, folder: Path, rel: PurePosixPath, ancestors: set[Path], out: list[tuple[str, bytes]]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise CliError(f"cannot read {folder}: {exc.strerror}") from exc
    for entry in entries:
        path, name = Path(entry.path), rel / entry.name
        if entry.is_symlink():
            target = path.resolve()
            if not _inside(target, root):
                raise CliError(f"{name} is a symlink to {target}, outside the agent folder; refusing to upload it")
            if not target.exists():
                continue  # a dangling link inside the folder: nothing to upload
        if entry.is_dir():  # follows links, which were just checked to stay inside
            real = path.resolve()
            if entry.name in SKIPPED_DIRS or real in ancestors:  # the second: a link cycle
                continue
            _visit(root, path, name, ancestors | {real}, out)
        elif entry.is_file():
            try:
                out.append((name.as_posix(), path.read_bytes()))
            except OSError as exc:
                raise CliError(f"cannot read {name}: {exc.strerror}") from exc
