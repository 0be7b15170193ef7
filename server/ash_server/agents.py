"""Agents: folders with a CLAUDE.md, deployed from a server path or uploaded files, versioned on re-deploy.

Every deploy copies the folder under the data dir, so a version is immutable: a later edit of the source folder
does not change what sessions of that version run.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Invalid, NotFound, PayloadTooLarge
from .gateway.network import parse_network
from .paths import NAME_RE, DataDir, confine, is_within, relative_path
from .store.models import Agent, utcnow
from .store.repository import Store

SYSTEM_PROMPT_FILE = "CLAUDE.md"


@dataclass(frozen=True, slots=True)
class UploadedFile:
    path: str
    content_b64: str


def decode_files(files: Sequence[UploadedFile], max_bytes: int) -> list[tuple[str, bytes]]:
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


def validate_env(env: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or not key.replace("_", "A").isalnum() or key[0].isdigit():
            raise Invalid(f"invalid environment variable name {key!r}")
        if not isinstance(value, str):
            raise Invalid(f"environment variable {key} must be a string")
        out[key] = value
    return out


class AgentService:
    def __init__(self, store: Store, data: DataDir, *, path_roots: list[Path], max_upload_bytes: int) -> None:
        self._store = store
        self._data = data
        self._path_roots = path_roots
        self._max_upload_bytes = max_upload_bytes

    async def get(self, tenant_id: str, name: str) -> Agent:
        agent = await self._store.get_agent(tenant_id, name)
        if agent is None:
            raise NotFound(f"agent {name!r} not found", agent=name)
        return agent

    async def list(self, tenant_id: str) -> Sequence[Agent]:
        return await self._store.list_agents(tenant_id)

    def folder(self, agent: Agent) -> Path:
        return self._data.agent(agent.tenant_id, agent.name)

    async def deploy(
        self,
        tenant_id: str,
        name: str,
        *,
        path: str | None,
        files: Sequence[UploadedFile] | None,
        system_prompt: str | None,
        env: dict[str, Any] | None,
    ) -> Agent:
        if not NAME_RE.match(name):
            raise Invalid("agent name must match ^[a-zA-Z0-9_-]{1,255}$", name=name)
        clean_env = validate_env(env or {})
        staging = self._data.root / "agents" / tenant_id / f".{name}.{uuid.uuid4().hex}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            source = self._stage(staging, path=path, files=files)
            if system_prompt:
                (staging / SYSTEM_PROMPT_FILE).write_text(system_prompt)
            if not (staging / SYSTEM_PROMPT_FILE).is_file():
                raise Invalid(f"an agent folder needs a {SYSTEM_PROMPT_FILE} (or a systemPrompt)", name=name)
            target = self._data.agent(tenant_id, name)
            existing = await self._store.get_agent(tenant_id, name)
            # Swap folders by rename so a session starting right now copies either the old or the new version.
            old = target.with_name(f".{name}.old.{uuid.uuid4().hex}")
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        now = utcnow()
        stored_path = source if source is not None else str(target)
        if existing is None:
            agent = Agent(
                tenant_id=tenant_id,
                name=name,
                version=1,
                path=stored_path,
                managed=source is None,
                env=clean_env,
                config={},
                created_at=now,
                updated_at=now,
            )
        else:
            agent = existing
            agent.version += 1
            agent.path = stored_path
            agent.managed = source is None
            agent.env = clean_env if env is not None else agent.env
            agent.updated_at = now
        return await self._store.save_agent(agent)

    def _stage(self, staging: Path, *, path: str | None, files: Sequence[UploadedFile] | None) -> str | None:
        if path is not None and files:
            raise Invalid("give either path or files, not both")
        if path is not None:
            source = Path(path)
            if not source.is_absolute():
                raise Invalid("path must be an absolute folder on the server", path=path)
            if not self._path_roots:
                raise Invalid(
                    "deploying from a server path is disabled on this server (set ASH_AGENT_ROOTS); "
                    "upload the folder's files instead (ash deploy does this)",
                    path=path,
                )
            if not is_within(source, self._path_roots):
                raise Invalid("path is outside the folders this server deploys from (ASH_AGENT_ROOTS)", path=path)
            if not source.is_dir():
                raise Invalid(f"no such folder on the server: {path}", path=path)
            # symlinks=True copies links as links: a link pointing out of the folder is not followed here, and
            # the files API and the sandbox both refuse to follow it out of the workspace.
            shutil.copytree(source, staging, symlinks=True)
            return str(source.resolve())
        staging.mkdir()
        for rel, data in decode_files(files or [], self._max_upload_bytes):
            target = confine(staging, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return None

    async def update(
        self, tenant_id: str, name: str, *, env: dict[str, Any] | None, config: dict[str, Any] | None
    ) -> Agent:
        agent = await self.get(tenant_id, name)
        if env is not None:
            agent.env = {**agent.env, **validate_env(env)}
        if config is not None:
            if "network" in config:
                parse_network(config["network"])  # Invalid (400) now rather than a sandbox that cannot start
            agent.config = {**agent.config, **config}
        agent.updated_at = utcnow()
        return await self._store.save_agent(agent)

    async def delete(self, tenant_id: str, name: str) -> None:
        if not await self._store.delete_agent(tenant_id, name):
            raise NotFound(f"agent {name!r} not found", agent=name)
        shutil.rmtree(self._data.agent(tenant_id, name), ignore_errors=True)
