"""Agents: folders with a CLAUDE.md, deployed from a server path or uploaded files, versioned on re-deploy.

Every deploy copies the folder under the data dir, so a version is immutable: a later edit of the source folder
does not change what sessions of that version run. The copy is also packed into the database as a version row
(store/agent_versions.py): a server that starts a session of an agent deployed elsewhere (another coordinator's
runner, or a second standalone server on the same database), or of a version activated since, unpacks the active
version from there first (`materialize`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import shutil
import tarfile
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from . import archive
from .agent_folders import SYSTEM_PROMPT_FILE, FolderRules, check_folder, copy_folder, ensure_system_prompt, write_files
from .errors import Invalid, NotFound, PayloadTooLarge
from .gateway.network import NetworkCeilings, parse_network
from .paths import NAME_RE, DataDir, relative_path, remove_tree
from .sandbox.dependencies import Bundle, DependencyBuilder
from .store.agent_versions import AgentVersionStore, NewVersion
from .store.models import DEFAULT_TENANT, Agent, utcnow
from .store.repository import Store


@dataclass(frozen=True, slots=True)
class UploadedFile:
    path: str
    content_b64: str


def decode_files(
    files: Sequence[UploadedFile], max_bytes: int, *, max_files: int | None = None
) -> list[tuple[str, bytes]]:
    if max_files is not None and len(files) > max_files:
        raise PayloadTooLarge(f"more than {max_files} files uploaded (ASH_MAX_AGENT_FILES)", limit=max_files)
    decoded: list[tuple[str, bytes]] = []
    total = 0
    for item in files:
        relative_path(item.path)
        try:
            data = base64.b64decode(item.content_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Invalid(f"file {item.path!r}: content is not valid base64", path=item.path) from exc
        total += len(data)
        if total > max_bytes:
            raise PayloadTooLarge(f"uploaded files exceed {max_bytes} bytes", limit=max_bytes)
        decoded.append((item.path, data))
    return decoded


def pack_folder(folder: Path) -> bytes:
    """An agent folder as tar + zstd, symlinks kept as links (archive.py)."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(cast(IO[bytes], out), closefd=False) as stream:
        archive.pack([("", folder)], stream)
    return out.getvalue()


def folder_summary(folder: Path) -> tuple[int, str | None]:
    """How many files a staged version holds, and its CLAUDE.md (the reference's `systemPrompt` of a version)."""
    count = sum(1 for path in folder.rglob("*") if not path.is_dir() or path.is_symlink())
    prompt = folder / SYSTEM_PROMPT_FILE
    text = prompt.read_text(errors="replace") if prompt.is_file() and not prompt.is_symlink() else None
    return count, text


def unpack_folder(data: bytes, dest: Path) -> None:
    """Extract a bundle into the fresh folder `dest` (same refusals as any archive: no `..`, no writes through
    symlinks, no devices)."""
    with (
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        archive.extract(tar, dest, allow_symlinks=True)


# A name the shells and `env` take (POSIX): the API's schemas say so too (api/schemas/base.py EnvVars).
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def validate_env(env: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or re.fullmatch(ENV_NAME, key) is None:
            raise Invalid(f"invalid environment variable name {key!r}")
        if not isinstance(value, str):
            raise Invalid(f"environment variable {key} must be a string")
        out[key] = value
    return out


class AgentService:
    def __init__(
        self,
        store: Store,
        data: DataDir,
        *,
        path_roots: list[Path],
        max_upload_bytes: int,
        versions: AgentVersionStore,
        max_files: int = 10_000,
        path_tenants: frozenset[str] | None = frozenset({DEFAULT_TENANT}),
        network_ceilings: NetworkCeilings | None = None,
        dependencies: DependencyBuilder | None = None,
    ) -> None:
        """`dependencies`: installs what agents' MCP servers need (requirements.txt, package.json); None: never."""
        self._store = store
        self._dependencies = dependencies
        self.versions = versions
        self._network_ceilings = network_ceilings or NetworkCeilings({})
        self._data = data
        self._max_upload_bytes = max_upload_bytes
        self._max_files = max_files
        self._folders = FolderRules(
            path_roots,
            data.root,
            max_files=max_files,
            max_bytes=max_upload_bytes,
            sources=data.sources,
            tenants=path_tenants,
        )
        self._materializing: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    async def get(self, tenant_id: str, name: str) -> Agent:
        agent = await self._store.get_agent(tenant_id, name)
        if agent is None:
            raise NotFound(f"Agent not found: {name!r}", agent=name)
        return agent

    async def list(self, tenant_id: str) -> Sequence[Agent]:
        return await self._store.list_agents(tenant_id)

    def folder(self, agent: Agent) -> Path:
        return self._data.agent(agent.tenant_id, agent.name)

    def _version_file(self, tenant_id: str, name: str) -> Path:
        return self._data.root / "agents" / tenant_id / f".{name}.version"

    def _local_version(self, agent: Agent) -> int | None:
        try:
            return int(self._version_file(agent.tenant_id, agent.name).read_text())
        except (OSError, ValueError):
            return None

    async def materialize(self, agent: Agent) -> Path:
        """The agent's folder on this server at `agent.version`, unpacked from the database when this server's
        copy is missing or older (the agent was deployed through another server)."""
        folder = self.folder(agent)
        if self._local_version(agent) == agent.version and folder.is_dir():
            return folder
        key = (agent.tenant_id, agent.name)
        lock = self._materializing.get(key)
        if lock is None:
            lock = self._materializing[key] = asyncio.Lock()
        async with lock:
            if self._local_version(agent) == agent.version and folder.is_dir():
                return folder
            archive = await self.versions.files_of(agent.id, agent.version)
            if archive is None:
                if folder.is_dir():
                    return folder  # deployed here before versions kept their files
                raise NotFound(
                    f"the files of agent {agent.name!r} version {agent.version} are not available; deploy it again",
                    agent=agent.name,
                )
            await asyncio.to_thread(self._install, agent, archive)
        return folder

    def staging_folder(self, tenant_id: str, name: str) -> Path:
        """A fresh name beside the agent's folder, where a version is put together before it is swapped in."""
        return self._data.root / "agents" / tenant_id / f".{name}.{uuid.uuid4().hex}"

    def _install(self, agent: Agent, data: bytes) -> None:
        staging = self.staging_folder(agent.tenant_id, agent.name)
        staging.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir(mode=0o755)
        try:
            unpack_folder(data, staging)
            staging.chmod(0o755)
            self._swap(staging, self.folder(agent))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._version_file(agent.tenant_id, agent.name).write_text(str(agent.version))

    @staticmethod
    def _swap(staging: Path, target: Path) -> None:
        """Replace `target` by `staging` by rename, so a session starting right now copies either the old or the
        new version, never a mix."""
        old = target.with_name(f".{target.name}.old.{uuid.uuid4().hex}")
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    async def deploy(
        self,
        tenant_id: str,
        name: str,
        *,
        path: str | None,
        files: Sequence[UploadedFile] | None,
        system_prompt: str | None,
        env: dict[str, Any] | None,
        created_by: str | None = None,
    ) -> tuple[Agent, Bundle | None]:
        """The new version, and its installed dependencies (built before anything is stored: a failed build
        refuses the deploy)."""
        if not NAME_RE.match(name):
            raise Invalid("agent name must match ^[a-zA-Z0-9_-]{1,255}$", name=name)
        clean_env = validate_env(env or {})
        if path is not None and files:
            raise Invalid("give either path or files, not both")
        uploads = await asyncio.to_thread(decode_files, files or [], self._max_upload_bytes, max_files=self._max_files)
        staging = self.staging_folder(tenant_id, name)
        target = self._data.agent(tenant_id, name)
        # Checking, copying and packing a folder block: all of it runs in a thread (a 15,000-file folder once
        # froze /health for a minute).
        source = self._folders.resolve(path, tenant_id) if path is not None else None
        try:
            new = await asyncio.to_thread(self._stage, staging, name, source, uploads, system_prompt)
            bundle = await self._dependencies.ensure(staging) if self._dependencies is not None else None
            now = utcnow()
            stored_path = str(source) if source is not None else str(target)

            def create() -> Agent:
                return Agent(
                    tenant_id=tenant_id,
                    name=name,
                    path=stored_path,
                    managed=source is None,
                    env=clean_env,
                    config={},
                    created_at=now,
                    updated_at=now,
                )

            def change(agent: Agent) -> None:
                agent.path = stored_path
                agent.managed = source is None
                if env is not None:
                    agent.env = clean_env

            saved, _ = await self.versions.publish(
                tenant_id, name, replace(new, created_by=created_by), activate=True, create=create, change=change
            )
            await asyncio.to_thread(self.install_staged, saved, staging)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return saved, bundle

    async def bundle(self, agent: Agent) -> Bundle | None:
        """The installed dependencies of this server's folder of the agent (materialized), built if missing here."""
        if self._dependencies is None:
            return None
        return await self._dependencies.ensure(self.folder(agent))

    def install_staged(self, agent: Agent, staging: Path) -> None:
        """Make the staged files of the version just activated this server's folder of the agent. In a thread."""
        self._swap(staging, self.folder(agent))
        self._version_file(agent.tenant_id, agent.name).write_text(str(agent.version))

    def _stage(
        self,
        staging: Path,
        name: str,
        source: Path | None,
        uploads: Sequence[tuple[str, bytes]],
        system_prompt: str | None,
    ) -> NewVersion:
        """The deploy's files in `staging`, packed. In a thread."""
        staging.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            check_folder(source, self._folders)
            copy_folder(source, staging)
        else:
            write_files(staging, uploads)
        ensure_system_prompt(staging, name, system_prompt)
        count, prompt = folder_summary(staging)
        return NewVersion(archive=pack_folder(staging), file_count=count, system_prompt=prompt)

    async def update(
        self,
        tenant_id: str,
        name: str,
        *,
        env: dict[str, Any] | None,
        config: dict[str, Any] | None,
        description: str | None = None,
    ) -> Agent:
        agent = await self.get(tenant_id, name)
        if description is not None:
            agent.description = description
        if env is not None:
            agent.env = {**agent.env, **validate_env(env)}
        if config is not None:
            if "network" in config:
                # Invalid (400) or Forbidden (403) now, rather than a sandbox that cannot start.
                self._network_ceilings.check(tenant_id, parse_network(config["network"]))
            agent.config = {**agent.config, **config}
        agent.updated_at = utcnow()
        return await self._store.save_agent(agent)

    async def delete(self, tenant_id: str, name: str) -> None:
        if not await self._store.delete_agent(tenant_id, name):
            raise NotFound(f"Agent not found: {name!r}", agent=name)
        await remove_tree(self._data.agent(tenant_id, name))
        self._version_file(tenant_id, name).unlink(missing_ok=True)
