"""Agents: deploy, change, read, and their files."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field

from ...store.models import Agent
from .base import BASE64, EnvVars, Public, Schema

# -- Agents ---------------------------------------------------------------------------------------------------


class FileUpload(Schema):
    path: str = Field(min_length=1, max_length=4096)
    content: str = Field(description="File content, base64.", json_schema_extra=BASE64)


class AgentCreate(Schema):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,255}$")
    path: str | None = Field(None, description="A folder on the server's disk (must contain CLAUDE.md).")
    system_prompt: str | None = None
    files: list[FileUpload] | None = None
    env: EnvVars | None = None


class AgentUpdate(Schema):
    description: str | None = Field(None, max_length=10_000)
    env: EnvVars | None = None
    config: dict[str, Any] | None = None


class AgentPublic(Public):
    id: uuid.UUID
    name: str
    tenant_id: str
    version: int
    path: str
    description: str | None
    env: dict[str, str]
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Agent, **values: Any) -> Self:
        return super().of(row, env={k: "***" for k in row.env}, **values)


class AgentResponse(Schema):
    agent: AgentPublic
    dependencies: dict[str, Any] | None = Field(
        None,
        description="Deploy only: the agent's MCP dependencies as installed (`fingerprint`, `kinds`: python/node, "
        "`cached`: built before, `seconds`); null when it declares none (docs/mcp.md).",
    )


class AgentsResponse(Schema):
    agents: list[AgentPublic]


class ConfigResponse(Schema):
    config: dict[str, Any]


class AgentFile(Schema):
    path: str
    size: int
    modified_at: datetime
    type: Literal["file", "directory", "symlink"]


class AgentFilesResponse(Schema):
    files: list[AgentFile]
