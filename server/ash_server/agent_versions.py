"""Agent versions as the reference's clients see them (list, create, get, edit, delete, activate) and the file writes
that make new versions, on top of the version rows of store/agent_versions.py.

A version's files are the truth (its archive); `systemPrompt` is its CLAUDE.md. Creating a version copies the active
one's files (or `cloneFrom`'s) and, given a `systemPrompt`, writes it as CLAUDE.md; it is not active until activated.
A version that has been active is frozen: its name and release notes can change, its files and prompt cannot, so
what any session ran stays what it ran. Writing or deleting an agent file makes and activates a new version built
on the active one.
"""

from __future__ import annotations

import asyncio
import shutil
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .agent_folders import SYSTEM_PROMPT_FILE, write_files
from .agents import AgentService, UploadedFile, decode_files, folder_summary, pack_folder, unpack_folder
from .errors import Conflict, Invalid, NotFound, PayloadTooLarge
from .ids import parse_uuid
from .paths import confine, relative_path
from .store.agent_versions import AgentVersion, AgentVersionStore, NewVersion
from .store.models import BIGINT_MAX, Agent

# How often a file write is rebuilt when another writer activated a version while it was being built.
WRITE_ATTEMPTS = 3

Edit = Callable[[Path], None]


@dataclass(frozen=True, slots=True)
class VersionMetadata:
    """The reference's editable fields of a version; None leaves a field as it is."""

    name: str | None = None
    system_prompt: str | None = None
    release_notes: str | None = None
    knowledge_files: list[str] | None = None


class AgentVersions:
    def __init__(
        self, agents: AgentService, versions: AgentVersionStore, *, max_upload_bytes: int, max_files: int
    ) -> None:
        self._agents = agents
        self._versions = versions
        self._max_upload_bytes = max_upload_bytes
        self._max_files = max_files
        # Writers of one agent's versions take turns on this server; across servers the agent row's lock and
        # `based_on` keep them apart (store/agent_versions.py).
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, agent: Agent) -> asyncio.Lock:
        key = (agent.tenant_id, agent.name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def list(self, tenant_id: str, name: str) -> Sequence[AgentVersion]:
        agent = await self._agents.get(tenant_id, name)
        return await self._versions.list(agent.id)

    async def get(self, tenant_id: str, name: str, ref: str) -> AgentVersion:
        return await self._resolve(await self._agents.get(tenant_id, name), ref)

    async def _resolve(self, agent: Agent, ref: str) -> AgentVersion:
        """A version by its number or its id, as the reference's `resolveVersion` takes either."""
        found: AgentVersion | None
        if ref.isdigit() and str(int(ref)) == ref and int(ref) <= BIGINT_MAX:
            found = await self._versions.by_number(agent.id, int(ref))
        else:
            version_id = parse_uuid(ref)
            if version_id is None:
                raise NotFound(f"Version not found: {ref!r} is neither a version number nor a version id")
            found = await self._versions.by_id(agent.id, version_id)
        if found is None:
            raise NotFound(f"Version not found: agent {agent.name!r} has no version {ref!r}", version=ref)
        return found

    async def create(
        self, tenant_id: str, name: str, metadata: VersionMetadata, *, clone_from: str | None, created_by: str | None
    ) -> AgentVersion:
        agent = await self._agents.get(tenant_id, name)
        source: AgentVersion | None = None
        if clone_from is not None:
            try:
                source = await self._resolve(agent, clone_from)
            except NotFound:
                raise Invalid(f"Source version {clone_from} not found", cloneFrom=clone_from) from None
        prompt = metadata.system_prompt
        async with self._lock(agent):
            base = source.version_number if source is not None else agent.version
            new = await self._build(agent, base, _set_prompt(prompt) if prompt is not None else None)
            _, version = await self._versions.publish(
                tenant_id,
                name,
                replace(
                    new,
                    name=metadata.name,
                    release_notes=metadata.release_notes,
                    knowledge_files=(
                        metadata.knowledge_files
                        if metadata.knowledge_files is not None
                        else (source.knowledge_files if source is not None else None)
                    ),
                    created_by=created_by,
                ),
                activate=False,
            )
        return version

    async def update(self, tenant_id: str, name: str, ref: str, metadata: VersionMetadata) -> AgentVersion:
        agent = await self._agents.get(tenant_id, name)
        async with self._lock(agent):
            version = await self._resolve(agent, ref)
            changes_files = metadata.system_prompt is not None and metadata.system_prompt != version.system_prompt
            if version.frozen and (changes_files or metadata.knowledge_files is not None):
                raise Conflict(
                    f"version {version.version_number} of agent {name!r} has been active, so its files and prompt "
                    "are frozen; create a new version (cloneFrom) and activate that",
                    version=version.version_number,
                )
            if metadata.name is not None:
                version.name = metadata.name
            if metadata.release_notes is not None:
                version.release_notes = metadata.release_notes
            if metadata.knowledge_files is not None:
                version.knowledge_files = metadata.knowledge_files
            if changes_files and metadata.system_prompt is not None:
                rebuilt = await self._build(agent, version.version_number, _set_prompt(metadata.system_prompt))
                rebuilt.replace_files_of(version)
            return await self._versions.save(version)

    async def delete(self, tenant_id: str, name: str, ref: str) -> int:
        agent = await self._agents.get(tenant_id, name)
        version = await self._resolve(agent, ref)
        if not await self._versions.delete(version):
            raise Conflict(
                f"version {version.version_number} is the active version of agent {name!r}; activate another first",
                version=version.version_number,
            )
        return version.version_number

    async def activate(self, tenant_id: str, name: str, ref: str) -> tuple[Agent, AgentVersion]:
        """Sessions started from now on run this version; running ones keep theirs. Rollback is activating an
        older one."""
        agent = await self._agents.get(tenant_id, name)
        async with self._lock(agent):
            version = await self._resolve(agent, ref)
            activated = await self._versions.activate(agent, version.id)
            await self._agents.materialize(activated)
        return activated, version

    async def write_files(self, tenant_id: str, name: str, files: Sequence[UploadedFile]) -> tuple[Agent, int]:
        if not files:
            raise Invalid("files must hold at least one file")
        uploads = await asyncio.to_thread(decode_files, files, self._max_upload_bytes, max_files=self._max_files)

        def edit(folder: Path) -> None:
            write_files(folder, uploads)

        return await self._edit_active(tenant_id, name, edit), len(uploads)

    async def delete_file(self, tenant_id: str, name: str, file_path: str) -> Agent:
        await self._agents.get(tenant_id, name)  # 404 for an agent of another tenant, whatever the path
        rel = relative_path(file_path)
        if rel.as_posix() == SYSTEM_PROMPT_FILE:
            raise Invalid("CLAUDE.md is the agent's system prompt: write a new one instead of deleting it")

        def edit(folder: Path) -> None:
            # The parent resolved and confined, the last part not: a link is deleted, not what it points to.
            parent = confine(folder, rel.parent.as_posix()) if rel.parts[:-1] else folder.resolve()
            target = parent / rel.name
            if target.is_dir() and not target.is_symlink():
                raise Invalid(f"{file_path!r} is a directory: delete the files in it", path=file_path)
            if not target.is_symlink() and not target.is_file():
                raise NotFound(f"File not found: no file {file_path!r} in agent {name!r}", path=file_path)
            target.unlink()

        return await self._edit_active(tenant_id, name, edit)

    async def _edit_active(self, tenant_id: str, name: str, edit: Edit) -> Agent:
        """A new version: the active one's files with `edit` applied, activated at once (the reference writes
        into the live folder)."""
        for _ in range(WRITE_ATTEMPTS):
            agent = await self._agents.get(tenant_id, name)
            async with self._lock(agent):
                staging = self._agents.staging_folder(agent.tenant_id, agent.name)
                try:
                    new = await self._build(agent, agent.version, edit, keep=staging)
                    try:
                        activated, _ = await self._versions.publish(
                            tenant_id, name, new, activate=True, based_on=agent.version
                        )
                    except Conflict:
                        continue  # another server activated a version meanwhile: build on that one
                    await asyncio.to_thread(self._agents.install_staged, activated, staging)
                    return activated
                finally:
                    await asyncio.to_thread(shutil.rmtree, staging, True)
        raise Conflict(f"agent {name!r} kept changing while its files were written; try again", agent=name)

    async def _build(self, agent: Agent, base: int, edit: Edit | None, *, keep: Path | None = None) -> NewVersion:
        """Version `base`'s files, edited, packed. `keep` is a staging folder the caller installs afterwards;
        without one the files are only packed."""
        archive = await self._versions.files_of(agent.id, base)
        # An agent deployed before versions kept their files: its folder here is its active version.
        folder = None if archive is not None else await self._agents.materialize(agent)
        staging = keep or self._agents.staging_folder(agent.tenant_id, agent.name)
        try:
            return await asyncio.to_thread(self._stage, staging, archive, folder, edit)
        finally:
            if keep is None:
                await asyncio.to_thread(shutil.rmtree, staging, True)

    def _stage(self, staging: Path, archive: bytes | None, folder: Path | None, edit: Edit | None) -> NewVersion:
        """In a thread."""
        staging.parent.mkdir(parents=True, exist_ok=True)
        if archive is not None:
            staging.mkdir(mode=0o755)
            unpack_folder(archive, staging)
        elif folder is not None:
            shutil.copytree(folder, staging, symlinks=True)
        if edit is not None:
            edit(staging)
        count, prompt = folder_summary(staging)
        if count > self._max_files:
            raise PayloadTooLarge(f"agent would hold more than {self._max_files} files (ASH_MAX_AGENT_FILES)")
        packed = pack_folder(staging)
        if len(packed) > self._max_upload_bytes:
            raise PayloadTooLarge(f"agent files exceed {self._max_upload_bytes} bytes packed (ASH_MAX_UPLOAD_BYTES)")
        return NewVersion(archive=packed, file_count=count, system_prompt=prompt)


def _set_prompt(prompt: str) -> Edit:
    def edit(folder: Path) -> None:
        target = folder / SYSTEM_PROMPT_FILE
        if target.is_symlink():
            target.unlink()  # a link could lead the write out of the folder
        target.write_text(prompt)

    return edit
