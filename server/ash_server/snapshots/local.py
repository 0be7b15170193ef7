"""file:///path: snapshots in a local (or network-mounted) folder. An upload is written to a temporary name in the
same folder, flushed to disk and renamed, so an object exists whole or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from pathlib import Path

from .base import SnapshotMissing, SnapshotStore, SnapshotStoreError, valid_key

TEMP_SUFFIX = ".partial"


class LocalSnapshotStore(SnapshotStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*valid_key(key).split("/"))

    async def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SnapshotStoreError(f"snapshot folder {self.root} cannot be created: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise SnapshotStoreError(f"snapshot folder {self.root} is not writable")

    async def put(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._put, self._path(key), source)

    @staticmethod
    def _put(target: Path, source: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        try:
            with source.open("rb") as src, temp.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise

    async def get(self, key: str, target: Path) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(shutil.copyfile, path, target)
        except FileNotFoundError as exc:
            raise SnapshotMissing(f"no object {key} in {self.url}", key=key) from exc

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    async def list(self, prefix: str) -> list[str]:
        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            keys = []
            for dirpath, _dirs, files in os.walk(self.root):
                for name in files:
                    if name.endswith(TEMP_SUFFIX):
                        continue
                    key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        keys.append(key)
            return sorted(keys)

        return await asyncio.to_thread(scan)
