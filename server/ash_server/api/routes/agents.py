"""/api/agents: deploy, list, inspect, change and delete agents."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import Field

from ...agents import UploadedFile
from ...errors import Invalid, NotFound
from ...paths import confine
from ...sandbox.limits import server_limits, validate_limits
from ..deps import PrincipalDep, ServicesDep
from ..schemas import (
    AgentCreate,
    AgentFile,
    AgentFilesResponse,
    AgentPublic,
    AgentResponse,
    AgentsResponse,
    AgentUpdate,
    ConfigResponse,
    FileUpload,
    OkResponse,
    Schema,
)
from .files import FILE_RESPONSE, file_json

router = APIRouter(prefix="/api/agents", tags=["agents"])

MAX_LISTED_FILES = 10_000
MAX_READ_BYTES = 100 * 1024 * 1024


@router.post("", status_code=201, response_model=AgentResponse)
async def deploy_agent(body: AgentCreate, principal: PrincipalDep, services: ServicesDep) -> AgentResponse:
    agent, dependencies = await services.agents.deploy(
        principal.tenant_id,
        body.name,
        path=body.path,
        files=[UploadedFile(f.path, f.content) for f in body.files] if body.files is not None else None,
        system_prompt=body.system_prompt,
        env=body.env,
    )
    services.warm.agents_changed()  # warm sandboxes of the old version go, new ones start
    return AgentResponse(
        agent=AgentPublic.of(agent), dependencies=dependencies.public() if dependencies is not None else None
    )


@router.get("", response_model=AgentsResponse)
async def list_agents(principal: PrincipalDep, services: ServicesDep) -> AgentsResponse:
    return AgentsResponse(agents=[AgentPublic.of(a) for a in await services.agents.list(principal.tenant_id)])


@router.get("/{name}", response_model=AgentResponse)
async def get_agent(name: str, principal: PrincipalDep, services: ServicesDep) -> AgentResponse:
    return AgentResponse(agent=AgentPublic.of(await services.agents.get(principal.tenant_id, name)))


@router.patch("/{name}", response_model=AgentResponse)
async def update_agent(name: str, body: AgentUpdate, principal: PrincipalDep, services: ServicesDep) -> AgentResponse:
    if body.config is not None:
        _check_limits(body.config, services)
        await services.sandboxes.check_runtime(principal.tenant_id, body.config)
    agent = await services.agents.update(
        principal.tenant_id, name, env=body.env, config=body.config, description=body.description
    )
    services.warm.agents_changed()
    return AgentResponse(agent=AgentPublic.of(agent))


@router.delete("/{name}", response_model=OkResponse)
async def delete_agent(name: str, principal: PrincipalDep, services: ServicesDep) -> OkResponse:
    await services.agents.delete(principal.tenant_id, name)
    services.warm.agents_changed()
    return OkResponse()


@router.get("/{name}/config", response_model=ConfigResponse)
async def get_agent_config(name: str, principal: PrincipalDep, services: ServicesDep) -> ConfigResponse:
    return ConfigResponse(config=(await services.agents.get(principal.tenant_id, name)).config)


@router.patch("/{name}/config", response_model=ConfigResponse)
async def update_agent_config(
    name: str, body: dict[str, object], principal: PrincipalDep, services: ServicesDep
) -> ConfigResponse:
    _check_limits(body, services)
    await services.sandboxes.check_runtime(principal.tenant_id, body)
    agent = await services.agents.update(principal.tenant_id, name, env=None, config=dict(body))
    services.warm.agents_changed()
    return ConfigResponse(config=agent.config)


def _check_limits(config: Mapping[str, object], services: ServicesDep) -> None:
    """Refuse (400) sandbox limits that are malformed or above the server's, and bad warm pool sizes, before they are
    stored."""
    if config.get("limits") is not None:
        validate_limits(config["limits"], server_limits(services.settings))
    size = config.get("warmPoolSize")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 100):
        raise Invalid("warmPoolSize must be an integer from 0 to 100", warmPoolSize=size)


@router.get("/{name}/files", response_model=AgentFilesResponse)
async def list_agent_files(name: str, principal: PrincipalDep, services: ServicesDep) -> AgentFilesResponse:
    root = services.agents.folder(await services.agents.get(principal.tenant_id, name))
    return AgentFilesResponse(files=await asyncio.to_thread(_list_files, root))


def _list_files(root: Path) -> list[AgentFile]:
    files: list[AgentFile] = []
    for path in sorted(root.rglob("*")):
        if len(files) >= MAX_LISTED_FILES:
            break
        kind: Literal["file", "directory", "symlink"] = (
            "symlink" if path.is_symlink() else "directory" if path.is_dir() else "file"
        )
        info = path.lstat()
        files.append(
            AgentFile(
                path=path.relative_to(root).as_posix(),
                size=info.st_size if kind == "file" else 0,
                type=kind,
                modified_at=datetime.fromtimestamp(info.st_mtime, UTC),
            )
        )
    return files


def _wants_raw(format: Literal["raw", "json"] | None, accept: str | None) -> bool:
    """JSON by default, as the reference; raw bytes with `format=raw`, or when the client asks for anything but
    JSON in `Accept` (`application/octet-stream`, `text/plain`, ...)."""
    if format is not None:
        return format == "raw"
    wanted = [part.split(";")[0].strip() for part in (accept or "").split(",") if part.strip()]
    return bool(wanted) and not any(w in ("application/json", "*/*", "application/*") for w in wanted)


class AgentFilesWrite(Schema):
    files: list[FileUpload] = Field(min_length=1, max_length=10_000)


class AgentFilesWritten(Schema):
    written: int
    version: int = Field(description="The agent's new version, active now.")


class AgentFileDeleted(Schema):
    deleted: bool = True
    version: int = Field(description="The agent's new version, active now.")


@router.post("/{name}/files", response_model=AgentFilesWritten)
async def write_agent_files(
    name: str, body: AgentFilesWrite, principal: PrincipalDep, services: ServicesDep
) -> AgentFilesWritten:
    """Write files (base64) into the agent: a new version with them, active at once."""
    agent, written = await services.agent_versions.write_files(
        principal.tenant_id, name, [UploadedFile(f.path, f.content) for f in body.files]
    )
    services.warm.agents_changed()
    return AgentFilesWritten(written=written, version=agent.version)


@router.delete("/{name}/files/{file_path:path}", response_model=AgentFileDeleted)
async def delete_agent_file(
    name: str, file_path: str, principal: PrincipalDep, services: ServicesDep
) -> AgentFileDeleted:
    """Delete one file: a new version without it, active at once."""
    agent = await services.agent_versions.delete_file(principal.tenant_id, name, file_path)
    services.warm.agents_changed()
    return AgentFileDeleted(version=agent.version)


@router.get("/{name}/files/{file_path:path}", response_model=None, responses=FILE_RESPONSE)
async def read_agent_file(
    name: str,
    file_path: str,
    principal: PrincipalDep,
    services: ServicesDep,
    format: Literal["raw", "json"] | None = Query(None, description="json (the default) or raw bytes."),
    accept: str | None = Header(None),
) -> Response | dict[str, object]:
    root: Path = services.agents.folder(await services.agents.get(principal.tenant_id, name))
    target = confine(root, file_path)
    if not await asyncio.to_thread(target.is_file):
        raise NotFound(f"File not found: no file {file_path!r} in agent {name!r}")
    size = (await asyncio.to_thread(target.stat)).st_size
    if size > MAX_READ_BYTES:
        raise Invalid(f"File too large ({size} bytes, max {MAX_READ_BYTES}) to read through the API")
    data = await asyncio.to_thread(target.read_bytes)
    if _wants_raw(format, accept):
        return Response(data, media_type="application/octet-stream")
    return file_json(file_path, data)
