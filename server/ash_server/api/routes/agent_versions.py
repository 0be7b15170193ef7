"""/api/agents/{name}/versions: an agent's versions, as the reference's clients call them, and rollback by
activating an older one."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Path
from pydantic import Field

from ...agent_versions import VersionMetadata
from ..deps import PrincipalDep, ServicesDep
from ..schemas import Public, Schema

router = APIRouter(prefix="/api/agents/{name}/versions", tags=["agents"])

VersionRef = Path(description="The version number, or the version's id.")


class AgentVersionPublic(Public):
    id: uuid.UUID
    tenant_id: str
    agent_name: str
    version_number: int
    name: str
    system_prompt: str | None = Field(description="The version's CLAUDE.md.")
    release_notes: str | None
    is_active: bool
    knowledge_files: list[str] | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    # Ours: what the version holds, and whether it can still be edited.
    file_count: int
    size: int = Field(description="Bytes of the version's packed files.")
    sha256: str
    activated_at: datetime | None = Field(description="First activation; from then on files and prompt are frozen.")


class VersionUpdate(Schema):
    name: str | None = Field(None, min_length=1, max_length=255)
    system_prompt: str | None = Field(None, max_length=1_000_000, description="Becomes the version's CLAUDE.md.")
    release_notes: str | None = Field(None, max_length=10_000)
    knowledge_files: list[str] | None = Field(None, max_length=10_000)

    def metadata(self) -> VersionMetadata:
        return VersionMetadata(
            name=self.name,
            system_prompt=self.system_prompt,
            release_notes=self.release_notes,
            knowledge_files=self.knowledge_files,
        )


class VersionCreate(VersionUpdate):
    clone_from: int | str | None = Field(
        None, description="Version number or id whose files (and knowledgeFiles) the new version starts from."
    )


class VersionResponse(Schema):
    version: AgentVersionPublic


class VersionsResponse(Schema):
    versions: list[AgentVersionPublic]


class ActivateResponse(Schema):
    activated: bool
    version_number: int


@router.get("", response_model=VersionsResponse)
async def list_agent_versions(name: str, principal: PrincipalDep, services: ServicesDep) -> VersionsResponse:
    versions = await services.agent_versions.list(principal.tenant_id, name)
    return VersionsResponse(versions=[AgentVersionPublic.of(v) for v in versions])


@router.post("", status_code=201, response_model=VersionResponse)
async def create_agent_version(
    name: str, principal: PrincipalDep, services: ServicesDep, body: VersionCreate | None = None
) -> VersionResponse:
    body = body or VersionCreate()
    version = await services.agent_versions.create(
        principal.tenant_id,
        name,
        body.metadata(),
        clone_from=str(body.clone_from) if body.clone_from is not None else None,
        created_by=principal.key_id or None,
    )
    return VersionResponse(version=AgentVersionPublic.of(version))


@router.get("/{version}", response_model=VersionResponse)
async def get_agent_version(
    name: str, principal: PrincipalDep, services: ServicesDep, version: str = VersionRef
) -> VersionResponse:
    found = await services.agent_versions.get(principal.tenant_id, name, version)
    return VersionResponse(version=AgentVersionPublic.of(found))


@router.patch("/{version}", response_model=VersionResponse)
async def update_agent_version(
    name: str, body: VersionUpdate, principal: PrincipalDep, services: ServicesDep, version: str = VersionRef
) -> VersionResponse:
    updated = await services.agent_versions.update(principal.tenant_id, name, version, body.metadata())
    return VersionResponse(version=AgentVersionPublic.of(updated))


class VersionDeleted(Schema):
    deleted: bool = True
    version_number: int


@router.delete("/{version}", response_model=VersionDeleted)
async def delete_agent_version(
    name: str, principal: PrincipalDep, services: ServicesDep, version: str = VersionRef
) -> VersionDeleted:
    """200 with a body where the reference answers 204: the reference's own SDK parses every answer as JSON, so its
    `deleteAgentVersion` fails on an empty one."""
    deleted = await services.agent_versions.delete(principal.tenant_id, name, version)
    return VersionDeleted(version_number=deleted)


@router.post("/{version}/activate", response_model=ActivateResponse)
async def activate_agent_version(
    name: str, principal: PrincipalDep, services: ServicesDep, version: str = VersionRef
) -> ActivateResponse:
    _, activated = await services.agent_versions.activate(principal.tenant_id, name, version)
    services.warm.agents_changed()  # warm sandboxes of the version that was active go
    return ActivateResponse(activated=True, version_number=activated.version_number)
