"""Request and response bodies of the REST API (camelCase on the wire, as ../spec/api.md fixes)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..states import PermissionMode, SessionStatus
from ..store.models import Agent, ApiKey, Credential, Message, Session, SessionEvent, UsageEvent


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# -- Agents ---------------------------------------------------------------------------------------------------


class FileUpload(Schema):
    path: str = Field(min_length=1, max_length=4096)
    content: str = Field(description="File content, base64.")


class AgentCreate(Schema):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,255}$")
    path: str | None = Field(None, description="A folder on the server's disk (must contain CLAUDE.md).")
    system_prompt: str | None = None
    files: list[FileUpload] | None = None
    env: dict[str, str] | None = None


class AgentUpdate(Schema):
    description: str | None = Field(None, max_length=10_000)
    env: dict[str, str] | None = None
    config: dict[str, Any] | None = None


class AgentPublic(Schema):
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
    def of(cls, agent: Agent) -> AgentPublic:
        return cls(
            id=agent.id,
            name=agent.name,
            tenant_id=agent.tenant_id,
            version=agent.version,
            path=agent.path,
            description=agent.description,
            env={k: "***" for k in agent.env},
            config=agent.config,
            created_at=agent.created_at,
            updated_at=agent.updated_at,
        )


class AgentResponse(Schema):
    agent: AgentPublic


class AgentsResponse(Schema):
    agents: list[AgentPublic]


class OkResponse(Schema):
    ok: bool = True


class ConfigResponse(Schema):
    config: dict[str, Any]


class AgentFile(Schema):
    path: str
    size: int
    modified_at: datetime
    type: Literal["file", "directory", "symlink"]


class AgentFilesResponse(Schema):
    files: list[AgentFile]


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
    extra_env: dict[str, str] | None = None


class SessionConfigUpdate(Schema):
    model: str | None = Field(None, max_length=255)
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    betas: list[str] | None = None
    subagents: dict[str, Any] | None = None
    initial_agent: str | None = None


class SessionPublic(Schema):
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

    @classmethod
    def of(cls, session: Session) -> SessionPublic:
        return cls(
            id=session.id,
            tenant_id=session.tenant_id,
            agent_name=session.agent_name,
            agent_version=session.agent_version,
            sandbox_id=session.sandbox_id,
            status=session.status,
            runner_id=session.runner_id,
            parent_session_id=session.parent_session_id,
            created_at=session.created_at,
            last_active_at=session.last_active_at,
        )


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
    data: str


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
    budget_tokens: int | None = Field(None, ge=1024)

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
    max_turns: int | None = Field(None, ge=1)
    max_budget_usd: float | None = Field(None, gt=0)
    effort: Literal["low", "medium", "high", "max"] | None = None
    thinking: ThinkingConfig | None = None
    output_format: dict[str, Any] | None = None
    on_disconnect: Literal["continue", "interrupt"] = Field(
        "continue", description="What a client disconnect does to the turn (also `?onDisconnect=`)."
    )


class InterruptResponse(Schema):
    interrupted: bool
    turn_id: str | None


class MessagePublic(Schema):
    id: uuid.UUID
    session_id: uuid.UUID
    tenant_id: str
    role: str
    content: str
    sequence: int
    created_at: datetime

    @classmethod
    def of(cls, message: Message) -> MessagePublic:
        return cls(
            id=message.id,
            session_id=message.session_id,
            tenant_id=message.tenant_id,
            role=message.role,
            content=message.content,
            sequence=message.sequence,
            created_at=message.created_at,
        )


class MessagesResponse(Schema):
    messages: list[MessagePublic]


class EventPublic(Schema):
    id: uuid.UUID
    session_id: uuid.UUID
    tenant_id: str
    type: str
    data: str | None
    sequence: int
    created_at: datetime

    @classmethod
    def of(cls, event: SessionEvent) -> EventPublic:
        kind, data = event.type, event.data
        if kind == "usage":  # written by servers before 0.1: the reference's clients reject the type
            legacy = json.loads(data) if data else {}
            kind, data = "lifecycle", json.dumps({"action": "model_usage", **legacy}, separators=(",", ":"))
        return cls(
            id=event.id,
            session_id=event.session_id,
            tenant_id=event.tenant_id,
            type=kind,
            data=data,
            sequence=event.sequence,
            created_at=event.created_at,
        )


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


# -- Credentials ----------------------------------------------------------------------------------------------


class CredentialCreate(Schema):
    type: Literal["anthropic", "bedrock", "vertex", "custom", "openai"] = Field(
        description="anthropic: an API key (sent as x-api-key); custom: a bearer token for a gateway in front of "
        "the API. bedrock, vertex and openai can be stored but not used by sessions."
    )
    key: str = Field(min_length=1, max_length=16384, description="The secret. Never returned.")
    label: str | None = Field(None, max_length=255)


class CredentialPublic(Schema):
    id: uuid.UUID
    tenant_id: str
    type: str
    label: str | None
    hint: str = Field(description="A masked hint (`sk-ant-…x7Qa`) to tell keys apart; never the key.")
    active: bool
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, credential: Credential) -> CredentialPublic:
        return cls(
            id=credential.id,
            tenant_id=credential.tenant_id,
            type=credential.type,
            label=credential.label,
            hint=credential.hint,
            active=credential.active,
            created_at=credential.created_at,
            last_used_at=credential.last_used_at,
        )


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


class ApiKeyPublic(Schema):
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
    def of(cls, key: ApiKey) -> ApiKeyPublic:
        return cls(
            id=key.id,
            tenant_id=key.tenant_id,
            label=key.label,
            prefix=key.prefix,
            key_prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


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


class UsageEventPublic(Schema):
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

    @classmethod
    def of(cls, event: UsageEvent) -> UsageEventPublic:
        return cls(
            id=event.id,
            tenant_id=event.tenant_id,
            session_id=event.session_id,
            agent_name=event.agent_name,
            event_type=event.event_type,
            value=event.value,
            model=event.model,
            created_at=event.created_at,
        )


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


# -- Session files and exec -----------------------------------------------------------------------------------


class SessionFile(Schema):
    path: str
    size: int
    modified_at: datetime


class SessionFilesResponse(Schema):
    files: list[SessionFile]
    source: Literal["sandbox", "snapshot"] = Field(
        description="sandbox: the session has a live sandbox that may still change them; snapshot: it has none."
    )


class SessionFileUpload(Schema):
    path: str = Field(min_length=1, max_length=4096, description="Relative to `targetPath`; no `..`.")
    content: str = Field(description="File content, base64.")
    mime_type: str | None = Field(None, description="Accepted and ignored.")


class SessionFilesUpload(Schema):
    files: list[SessionFileUpload] = Field(min_length=1, max_length=10_000)
    target_path: str = Field(".", max_length=4096, description="A folder of the workspace to write under.")


class WrittenResponse(Schema):
    written: list[str] = Field(description="The workspace paths written.")


class DeletedResponse(Schema):
    deleted: bool


class WorkspaceUpload(Schema):
    bundle: str = Field(description="A tar.gz, base64: regular files and directories only.")


class WorkspaceUploadResponse(Schema):
    message: str
    written: int = Field(description="Files written.")


class ExecCreate(Schema):
    command: str = Field(min_length=1, max_length=100_000, description="Run with bash -c in the workspace.")
    timeout: int | None = Field(
        None, ge=1, description="Milliseconds (default 30000 or ASH_EXEC_MAX_TIMEOUT_MS if lower; at most that)."
    )


class ExecResponse(Schema):
    exit_code: int = Field(description="The command's exit status; 124 when it timed out, 128+N when killed by N.")
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool = Field(description="stdout or stderr was longer than 1 MiB and was cut.")


# -- Health ---------------------------------------------------------------------------------------------------


class PoolStats(Schema):
    """This server's sandbox pool (docs/architecture/sandbox-pool.md)."""

    total: int = Field(description="Live sandboxes: warming + warm + waiting + running (what counts against capacity).")
    cold: int = Field(description="Sessions whose sandbox was stopped (evicted, idle, stopped, restart); files kept.")
    warming: int = Field(description="Starting.")
    warm: int = Field(description="Started ahead (warm pool), not yet claimed by a session.")
    waiting: int = Field(description="A session's, between turns.")
    running: int = Field(description="A session's, running a turn (never evicted).")
    max_capacity: int = Field(description="ASH_MAX_SANDBOXES.")
    resume_warm_hits: int = Field(description="Resumes that found the session's sandbox alive (since start).")
    resume_cold_hits: int = Field(description="Resumes and messages that started a sandbox for a session.")
    pre_warm_hits: int = Field(description="Sessions created on a warm sandbox (no process started).")
    evictions: int = Field(0, description="Idle sandboxes stopped to make room (since start).")


class HealthResponse(Schema):
    status: Literal["ok"]
    version: str
    coordinator_id: str
    active_sessions: int
    active_sandboxes: int
    remote_runners: int
    uptime: int = Field(description="Whole seconds since the server started (an integer, as the reference has it).")
    isolation: str = Field(description="How sandboxes are isolated: bwrap (namespaces) or none.")
    network: str = Field(description="Network of a sandbox whose agent does not ask for more: none, or full.")
    limits: str = Field(description="What enforces sandbox limits: cgroup-v2, cgroup-v1 or rlimit.")
    open_streams: int
    server_id: str = Field(description="This server's id: the `runnerId` of the sessions it runs.")
    snapshots: str | None = Field(description="Where snapshots go (ASH_SNAPSHOT_URL), or null when they are off.")
    pool: PoolStats
    mode: str = Field("standalone", description="standalone, coordinator or runner.")
    runners: list[RunnerPublic] | None = Field(
        None, description="Coordinator mode: every runner with its health and pool (`pool` sums the live ones)."
    )


# -- Runners (coordinator mode) -------------------------------------------------------------------------------


class RunnerRegistration(Schema):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: str = Field(pattern=r"^https?://[^/\s]+$", max_length=512)
    max_sandboxes: int = Field(ge=1)
    version: str = Field(max_length=64)


class RunnerHeartbeat(Schema):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    sandboxes: int = Field(ge=0)
    received: int = Field(ge=0)
    stats: dict[str, int] = Field(default_factory=dict)


class RunnerRef(Schema):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class RunnerPublic(Schema):
    id: str
    url: str
    status: Literal["live", "draining", "dead"]
    max_sandboxes: int
    load: int = Field(description="Sandboxes it holds, counting sessions placed on it since its last heartbeat.")
    pool: dict[str, int] = Field(description="Its pool's counts at its last heartbeat (as /health's `pool`).")
    version: str
    registered_at: datetime
    last_heartbeat_at: datetime
    # The reference's names for the same runner (its `getRunnerInfoFromDb` shape).
    runner_id: str
    host: str
    port: int
    active: int
    max: int
    last_heartbeat: datetime


class RunnersResponse(Schema):
    runners: list[RunnerPublic]
    count: int
    has_local: bool = Field(description="Whether this server also runs sandboxes itself (never, on a coordinator).")


class ErrorResponse(Schema):
    error: str
    status_code: int
