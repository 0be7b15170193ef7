"""The release archive as a zip file on the machine running `pulumi up`: the same files as the other stacks' archive
(ash_infra.source), copied to each Ash machine over SSH (delivery.py) because a Hetzner machine has no identity to
read a private bucket with. Written reproducibly (fixed timestamps, sorted), so the same checkout is the same file."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from ash_infra.source import REPO, source_archive, source_files

EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the file's bytes depend on the sources alone


def release_zip(repo: Path = REPO, folder: Path | None = None) -> tuple[Path, str]:
    """The zip (in `folder`, by default the temporary directory) and its content hash, ash_infra.source's."""
    _, digest = source_archive(repo)
    path = (folder or Path(tempfile.gettempdir())) / f"ash-release-{digest}.zip"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in source_files(repo):
                info = zipfile.ZipInfo(file.relative_to(repo).as_posix(), date_time=EPOCH)
                info.external_attr = (0o755 if file.stat().st_mode & 0o100 else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, file.read_bytes())
        partial.replace(path)
    return path, digest
