"""SQLAlchemy models. One set serves SQLite and PostgreSQL; Alembic migrations in migrations/ create them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..states import SandboxState, SessionStatus

DEFAULT_TENANT = "default"
# The largest integer both engines store (BIGINT): bigger ones from a request are refused (400) or match nothing.
BIGINT_MAX = 2**63 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both engines (SQLite would otherwise drop the offset without converting)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


E = TypeVar("E", bound=StrEnum)


class EnumString(TypeDecorator[E]):
    """A StrEnum stored as its string (String(16): the schema is the same as a plain string's); read back as the
    enum."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self._enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self._enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self._enum(value)


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    """A tenant: the owner of API keys, agents, sessions and credentials. Created by `ash admin create-tenant`
    (and `default` by the first start). Its id names its folders on disk, so it is short and path-safe."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    label: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    label: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class KeyRevision(Base):
    """One row whose version every revocation bumps: servers cache verified keys and re-check only this."""

    __tablename__ = "key_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1)
    path: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    managed: Mapped[bool] = mapped_column(default=False)
    env: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_tenant_created", "tenant_id", "created_at"),
        Index("ix_sessions_tenant_status", "tenant_id", "status"),
        Index("ix_sessions_tenant_agent", "tenant_id", "agent_name"),
        # /health counts active sessions of every tenant; start-up recovery finds them.
        Index("ix_sessions_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    agent_name: Mapped[str] = mapped_column(String(255))
    agent_version: Mapped[int] = mapped_column(Integer)
    sandbox_id: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[SessionStatus] = mapped_column(EnumString(SessionStatus), default=SessionStatus.STARTING)
    runner_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    parent_session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), nullable=True)
    # The Claude Agent SDK's own session id: what a cold resume passes as `resume=` to continue the conversation.
    sdk_session_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last message and timeline event sequences handed out. Writers reserve sequences by incrementing these in
    # their inserting transaction (`UPDATE ... RETURNING`), which locks this row until they commit: concurrent
    # writers, in any process, take turns, and a rolled-back writer gives its numbers back (no gaps).
    last_message_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("session_id", "sequence", name="uq_messages_session_sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("sessions.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    sequence: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SessionEvent(Base):
    __tablename__ = "session_events"
    __table_args__ = (
        UniqueConstraint("session_id", "sequence", name="uq_session_events_session_sequence"),
        Index("ix_session_events_session_type", "session_id", "type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("sessions.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[str | None] = mapped_column(Text, nullable=True)
    sequence: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StreamEvent(Base):
    """One SSE frame of a turn, kept so a client can re-attach (`Last-Event-ID`) and replay what it missed."""

    __tablename__ = "stream_events"
    __table_args__ = (Index("ix_stream_events_session_turn", "session_id", "turn_id"),)

    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    turn_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)
    # Partial frames (text deltas, raw stream events) go only to clients that asked for partial messages.
    partial: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SandboxRow(Base):
    """A sandbox of the pool (docs/architecture/sandbox-pool.md): `warming`, `warm` (started ahead, unclaimed: its
    `session_id` is the id reserved for the session that will claim it), `waiting`, `running`, or `cold` (its
    process is gone; its session's files are persisted and it resumes on the cold path). The row is also what lets
    a restarted server find and kill its orphans; `server_id` says which server's it is."""

    __tablename__ = "sandboxes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), nullable=True, index=True)
    state: Mapped[SandboxState] = mapped_column(EnumString(SandboxState), default=SandboxState.WARMING)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    server_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class Snapshot(Base):
    """A complete, uploaded archive of a session's workspace and home (snapshots/). The row is written only after
    the upload finished, so a half-written archive is never restored; `sha256` catches one damaged later."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("session_id", "generation", name="uq_snapshots_session_generation"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("sessions.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    server_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Credential(Base):
    """A model credential of a tenant, sealed with ASH_CREDENTIAL_KEY (see credentials.py); `hint` is masked."""

    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    type: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(255), nullable=True)
    hint: Mapped[str] = mapped_column(String(32))
    secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class UsageEvent(Base):
    """One measure of one model call (`input_tokens`, `output_tokens`, ..., `message`), recorded by the gateway."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_tenant_created", "tenant_id", "created_at"),
        Index("ix_usage_events_session_created", "session_id", "created_at"),
        Index("ix_usage_events_tenant_agent", "tenant_id", "agent_name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("sessions.id", ondelete="CASCADE"))
    agent_name: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Runner(Base):
    """A runner of a coordinator deployment (cluster/): where coordinators reach it and its load at its last
    heartbeat. `placed` counts sessions coordinators sent it and `received` those it had seen when it last
    reported, so placements between two heartbeats count as load at once (cluster/registry.py)."""

    __tablename__ = "runners"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="live")
    max_sandboxes: Mapped[int] = mapped_column(Integer)
    sandboxes: Mapped[int] = mapped_column(Integer, default=0)
    placed: Mapped[int] = mapped_column(Integer, default=0)
    received: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    version: Mapped[str] = mapped_column(String(64))
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
