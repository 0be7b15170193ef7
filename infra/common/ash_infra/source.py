"""The release archive the instances of both stacks install from: this checkout's package sources, lock file, unit
and boot script. Its name carries a hash of its contents, so a changed checkout is a new object (and a new launch
template version)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi

REPO = Path(__file__).resolve().parents[3]
# What infra/boot/install-ash.sh needs to `pip install` Ash and install its unit.
INCLUDED = ["pyproject.toml", "requirements.lock", "README.md", "server", "bridge", "cli", "systemd", "infra/boot"]


def source_files(repo: Path = REPO) -> list[Path]:
    files: list[Path] = []
    for entry in INCLUDED:
        path = repo / entry
        if path.is_file():
            files.append(path)
            continue
        files.extend(
            p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    return files


def source_archive(repo: Path = REPO) -> tuple[pulumi.AssetArchive, str]:
    """The archive and its content hash (16 hex digits)."""
    digest = hashlib.sha256()
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {}
    for path in source_files(repo):
        relative = path.relative_to(repo).as_posix()
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
        assets[relative] = pulumi.FileAsset(str(path))
    return pulumi.AssetArchive(assets), digest.hexdigest()[:16]
