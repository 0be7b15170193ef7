"""What an agent's MCP servers need, installed once per content: `requirements.txt` (Python) and `package.json`
(Node) at the top of an agent's folder are installed by a build that runs in a sandbox like any other (same user,
namespaces and limits), whose network reaches only the package registries (the gateway's egress allowlist,
ASH_DEPENDENCY_REGISTRIES). The result is a bundle under `<data>/dependencies/<fingerprint>/`, shared by every agent
with the same manifests and bound read-only into their sandboxes, with PYTHONPATH and NODE_PATH pointing at it.

The fingerprint is the manifests' content with the interpreter they are built for, so a change to either builds
anew and an unchanged redeploy costs nothing. A build that fails refuses the deploy with the installer's last lines.
See docs/mcp.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import Invalid
from ..paths import chown_tree, remove_tree
from .commands import CommandResult
from .sandbox import Sandbox

log = logging.getLogger(__name__)

PYTHON_MANIFEST = "requirements.txt"
NODE_MANIFESTS = ("package.json", "package-lock.json")
DONE = "bundle.json"
TAIL_CHARS = 2_000
PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


class BuildSandboxes(Protocol):
    """What a build needs of the sandbox manager (SandboxManager has it)."""

    async def start_build(self, workdir: Path, registries: Sequence[str]) -> Sandbox: ...

    async def exec(self, sandbox: Sandbox, command: str, timeout_s: float) -> CommandResult: ...

    async def stop(self, sandbox: Sandbox) -> None: ...


@dataclass(frozen=True, slots=True)
class Bundle:
    """An agent's installed dependencies, as the deploy reports them and sandboxes mount them."""

    fingerprint: str
    path: Path
    kinds: tuple[str, ...]  # "python", "node"
    cached: bool
    seconds: float

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if "python" in self.kinds:
            env["PYTHONPATH"] = str(self.path / "python")
        if "node" in self.kinds:
            env["NODE_PATH"] = str(self.path / "node" / "node_modules")
        return env

    def public(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "kinds": list(self.kinds), "cached": self.cached,
                "seconds": round(self.seconds, 1)}  # fmt: skip


class DependencyBuildFailed(Invalid):
    pass


def manifests(folder: Path) -> dict[str, bytes]:
    """The dependency manifests at the top of an agent folder, by name."""
    found = {}
    for name in (PYTHON_MANIFEST, *NODE_MANIFESTS):
        path = folder / name
        if path.is_file() and not path.is_symlink():
            found[name] = path.read_bytes()
    return found


def fingerprint(found: dict[str, bytes]) -> str:
    digest = hashlib.sha256(f"python{PYTHON_VERSION}\0".encode())
    for name in sorted(found):
        digest.update(name.encode() + b"\0" + hashlib.sha256(found[name]).digest())
    return digest.hexdigest()[:32]


class DependencyBuilder:
    def __init__(self, sandboxes: BuildSandboxes, root: Path, *, registries: Sequence[str], timeout_s: float) -> None:
        self._sandboxes = sandboxes
        self._root = root
        self._registries = list(registries)
        self._timeout_s = timeout_s
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def ensure(self, folder: Path) -> Bundle | None:
        """The bundle for this agent folder's manifests, built now if this server has none yet; None without any."""
        found = await asyncio.to_thread(manifests, folder)
        if not found:
            return None
        if "package-lock.json" in found and "package.json" not in found:
            del found["package-lock.json"]
            if not found:
                return None
        key = fingerprint(found)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            existing = await asyncio.to_thread(self._existing, key)
            if existing is not None:
                return existing
            return await self._build(key, found)

    def _existing(self, key: str) -> Bundle | None:
        done = self._root / key / DONE
        if not done.is_file():
            return None
        recorded = json.loads(done.read_text())
        return Bundle(key, self._root / key, tuple(recorded["kinds"]), cached=True, seconds=0.0)

    async def _build(self, key: str, found: dict[str, bytes]) -> Bundle:
        started = time.monotonic()
        workdir = self._root / f".build-{key}-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(_write_manifests, workdir, found)
        kinds = tuple(k for k, names in (("python", (PYTHON_MANIFEST,)), ("node", NODE_MANIFESTS))
                      if any(n in found for n in names))  # fmt: skip
        try:
            sandbox = await self._sandboxes.start_build(workdir, self._registries)
            try:
                for kind in kinds:
                    await self._install(sandbox, kind, key)
            finally:
                await self._sandboxes.stop(sandbox)
            await asyncio.to_thread(self._keep, workdir, key, kinds)
        finally:
            await remove_tree(workdir)
        seconds = time.monotonic() - started
        log.info("dependencies %s (%s) built in %.1f s", key, ", ".join(kinds), seconds)
        return Bundle(key, self._root / key, kinds, cached=False, seconds=seconds)

    async def _install(self, sandbox: Sandbox, kind: str, key: str) -> None:
        if kind == "python":
            command = (
                f"{shlex.quote(sys.executable)} -m pip install --disable-pip-version-check --no-input "
                f"--no-cache-dir --no-warn-script-location --target bundle/python -r {PYTHON_MANIFEST}"
            )
        else:
            command = (
                "mkdir -p bundle/node && cp package*.json bundle/node/ && cd bundle/node && "
                "npm install --omit=dev --no-audit --no-fund --ignore-scripts --cache ../../.npm"
            )
        result = await self._sandboxes.exec(sandbox, command, self._timeout_s)
        if result.exit_code != 0 or result.timed_out:
            tail = (result.stdout + result.stderr)[-TAIL_CHARS:]
            why = f"timed out after {self._timeout_s:.0f} s" if result.timed_out else f"exit {result.exit_code}"
            log.warning("dependencies %s: the %s install failed (%s): %s", key, kind, why, tail)
            raise DependencyBuildFailed(
                f"the agent's {kind} dependencies did not install ({why}): {tail}", dependencies=kind
            )

    def _keep(self, workdir: Path, key: str, kinds: tuple[str, ...]) -> None:
        """Move the built bundle to its place, owned by the server again (read-only to sandboxes). In a thread."""
        built = workdir / "bundle"
        chown_tree(built, (os.getuid(), os.getgid()))
        for path in [built, *built.rglob("*")]:
            if path.is_symlink():
                continue
            # Readable by every sandbox user, writable by none of them (the bind is read-only too).
            path.chmod(0o755 if path.is_dir() else (path.stat().st_mode & 0o755) | 0o444)
        (built / DONE).write_text(json.dumps({"kinds": list(kinds), "python": PYTHON_VERSION}))
        target = self._root / key
        if target.exists():
            shutil.rmtree(target)
        built.rename(target)


def _write_manifests(workdir: Path, found: dict[str, bytes]) -> None:
    # 0711 on the way, as the data dir's other folders: sandbox users pass through to their bundle, list nothing.
    workdir.parent.mkdir(exist_ok=True)
    workdir.parent.chmod(0o711)
    workdir.mkdir(mode=0o700)
    for name, content in found.items():
        (workdir / name).write_bytes(content)
