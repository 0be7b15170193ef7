"""What an account holds beside agents and sessions: model credentials, API keys, usage."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field

from ...store.models import ApiKey
from .base import Public, Schema

# -- Credentials ----------------------------------------------------------------------------------------------


class CredentialCreate(Schema):
    type: Literal["anthropic", "bedrock", "vertex", "custom", "openai"] = Field(
        description="anthropic: an API key (sent as x-api-key); custom: a bearer token for a gateway in front of "
        "the API. bedrock, vertex and openai can be stored but not used by sessions."
    )
    key: str = Field(
        min_length=1,
        max_length=16384,
        description="The secret. Never returned.",
        # What credentials.py takes: one line once stripped, not empty, no NUL.
        json_schema_extra={"pattern": r"^\s*[^\r\n\x00]*[^\s\x00][^\r\n\x00]*\s*$"},
    )
    label: str | None = Field(None, max_length=255)


class CredentialPublic(Public):
    id: uuid.UUID
    tenant_id: str
    type: str
    label: str | None
    hint: str = Field(description="A masked hint (`sk-ant-…x7Qa`) to tell keys apart; never the key.")
    active: bool
    created_at: datetime
    last_used_at: datetime | None


class CredentialResponse(Schema):
    credential: CredentialPublic


class CredentialsResponse(Schema):
    credentials: list[CredentialPublic]


# -- API keys -------------------------------------------------------------------------------------------------


class ApiKeyCreate(Schema):
    label: str | None = Field(None, max_length=255)
    expires_at: datetime | None = Field(
        None, description="When the key stops working (ISO 8601; without an offset, UTC). Unset: never."
    )


class ApiKeyPublic(Public):
    id: uuid.UUID
    tenant_id: str
    label: str | None
    prefix: str = Field(description="The key's first characters (`ash_AbCd1234`), to tell keys apart.")
    key_prefix: str = Field(description="The same as `prefix`, under the reference's name.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey, **values: Any) -> Self:
        return super().of(row, key_prefix=row.prefix, **values)


class ApiKeyResponse(Schema):
    api_key: ApiKeyPublic


class ApiKeysResponse(Schema):
    keys: list[ApiKeyPublic] = Field(description="The reference's name for the list.")
    api_keys: list[ApiKeyPublic] = Field(description="The same list (Ash's earlier name).")


class ApiKeyCreated(ApiKeyResponse):
    id: uuid.UUID = Field(description="The new key's id (the reference's `{id, key}`).")
    key: str = Field(description="The API key itself. Shown in this response only: it is stored as a keyed hash.")


# -- Usage ----------------------------------------------------------------------------------------------------

# Usage event types and the stats total each one adds to.
USAGE_TOTALS = {
    "input_tokens": "total_input_tokens",
    "output_tokens": "total_output_tokens",
    "cache_creation_tokens": "total_cache_creation_tokens",
    "cache_read_tokens": "total_cache_read_tokens",
    "tool_call": "total_tool_calls",
    "message": "total_messages",
    "compute_seconds": "total_compute_seconds",
}


class UsageEventPublic(Public):
    id: uuid.UUID
    tenant_id: str
    session_id: uuid.UUID
    agent_name: str
    event_type: str = Field(
        description="input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens, tool_call, or message "
        "(one per model call)."
    )
    value: float
    model: str
    created_at: datetime


class UsageEventsResponse(Schema):
    events: list[UsageEventPublic]


class UsageTotals(Schema):
    total_input_tokens: float = 0
    total_output_tokens: float = 0
    total_cache_creation_tokens: float = 0
    total_cache_read_tokens: float = 0
    total_tool_calls: float = 0
    total_messages: float = Field(0, description="Model calls (one assistant message from the API each).")
    total_compute_seconds: float = Field(0, description="Not measured in this version: always 0.")


class UsageStats(UsageTotals):
    by_model: dict[str, UsageTotals] = Field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[tuple[str, str, float]]) -> UsageStats:
        """From (model, event type, sum) rows."""
        stats = cls()
        for model, kind, value in rows:
            name = USAGE_TOTALS.get(kind)
            if name is None:
                continue
            per_model = stats.by_model.setdefault(model, UsageTotals())
            setattr(stats, name, getattr(stats, name) + value)
            setattr(per_model, name, getattr(per_model, name) + value)
        return stats


class UsageStatsResponse(Schema):
    stats: UsageStats
