"""Sessions: create and configure them, messages, their timeline and logs."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field

from ...states import PermissionMode, SessionStatus
from ...store.models import SessionEvent
from .base import BASE64, EnvVars, Public, Schema

# -- Sessions -------------------------------------------------------------------------------------------------


class SessionOptions(Schema):
    model: str | None = Field(None, max_length=255)
    system_prompt: str | None = None
    permission_mode: PermissionMode | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    mcp_servers: dict[str, dict[str, Any]] | None = None
    betas: list[str] | None = None
    subagents: dict[str, Any] | None = None
    initial_agent: str | None = None


class SessionCreate(SessionOptions):
    agent: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,255}$")
    credential_id: str | None = None
    extra_env: EnvVars | None = None


class SessionConfigUpdate(Schema):
    model: str | None = Field(None, max_length=255)
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    betas: list[str] | None = None
    subagents: dict[str, Any] | None = None
    initial_agent: str | None = None


class SessionPublic(Public):
    id: uuid.UUID
    tenant_id: str
    agent_name: str
    agent_version: int
    sandbox_id: str
    status: SessionStatus
    runner_id: str | None
    parent_session_id: uuid.UUID | None
    created_at: datetime
    last_active_at: datetime


class SessionResponse(Schema):
    session: SessionPublic


class SessionsResponse(Schema):
    sessions: list[SessionPublic]


class SessionsWithTotalResponse(SessionsResponse):
    """With `includeTotal=true` (the reference SDK's `listSessionsWithTotal`)."""

    total: int = Field(description="How many sessions match the filters, over all pages.")


class TextBlock(Schema):
    type: Literal["text"]
    text: str


class Base64Source(Schema):
    type: Literal["base64"]
    media_type: str = Field(alias="media_type")
    data: str = Field(json_schema_extra=BASE64)


class ImageBlock(Schema):
    type: Literal["image"]
    source: Base64Source


class DocumentBlock(Schema):
    type: Literal["document"]
    source: Base64Source
    title: str | None = None


ContentBlock = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ThinkingConfig(Schema):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=1024, le=1_000_000)

    def sdk(self) -> dict[str, Any]:
        """The SDK's ThinkingConfig shape (snake_case)."""
        if self.type == "enabled":
            return {"type": "enabled", "budget_tokens": self.budget_tokens or 10_000}
        return {"type": self.type}


class MessageCreate(Schema):
    content: str | Annotated[list[ContentBlock], Field(min_length=1, max_length=20)]
    attachments: list[uuid.UUID] | None = Field(
        None, max_length=20, description="Attachments of this session to add to the message (images, PDFs, text)."
    )
    include_partial_messages: bool = False
    model: str | None = Field(None, max_length=255)
    max_turns: int | None = Field(None, ge=1, le=100_000)
    max_budget_usd: float | None = Field(None, gt=0)
    effort: Literal["low", "medium", "high", "max"] | None = None
    thinking: ThinkingConfig | None = None
    output_format: dict[str, Any] | None = None
    on_disconnect: Literal["continue", "interrupt"] = Field(
        "continue", description="What a client disconnect does to the turn (also `?onDisconnect=`)."
    )
    auto_resume: bool = Field(
        True,
        description="A paused, stopped or failed session is resumed by this message (a `lifecycle` event "
        "`resumed` with `implicit: true`); false answers 400 until the client resumes it.",
    )


class InterruptResponse(Schema):
    interrupted: bool
    turn_id: str | None


class MessagePublic(Public):
    id: uuid.UUID
    session_id: uuid.UUID
    tenant_id: str
    role: str
    content: str
    sequence: int
    created_at: datetime


class MessagesResponse(Schema):
    messages: list[MessagePublic]


class EventPublic(Public):
    id: uuid.UUID
    session_id: uuid.UUID
    tenant_id: str
    type: str
    data: str | None
    sequence: int
    created_at: datetime

    @classmethod
    def of(cls, row: SessionEvent, **values: Any) -> Self:
        kind, data = row.type, row.data
        if kind == "usage":  # written by servers before 0.1: the reference's clients reject the type
            legacy = json.loads(data) if data else {}
            kind, data = "lifecycle", json.dumps({"action": "model_usage", **legacy}, separators=(",", ":"))
        return super().of(row, type=kind, data=data, **values)


class EventsResponse(Schema):
    events: list[EventPublic]


class LogEntry(Schema):
    index: int
    level: str
    text: str
    ts: str


class LogsResponse(Schema):
    logs: list[LogEntry]
    source: Literal["sandbox", "none"]
