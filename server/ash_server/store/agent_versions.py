"""Agent versions: every deploy, file write and created version of an agent is a numbered row holding that version's
files (tar + zstd); exactly one row of an agent is active, and `agents.version` is its number.

The files of a version never change once it has been active (a session may have run them). A version never
activated is a draft: the reference's clients create one, edit it, then activate it (agents/versions.py).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import Conflict, NotFound
from .models import Agent, Base, JSONType, UTCDateTime, utcnow
from .repository import Store


class AgentVersion(Base):
    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version_number", name="uq_agent_versions_number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(255))
    agent_name: Mapped[str] = mapped_column(String(255))
    version_number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    # CLAUDE.md of this version's files, as the reference's `systemPrompt`.
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    release_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    knowledge_files: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set the first time the version is activated: from then on its files are frozen.
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Loaded only when asked for (`files_of`): listing versions never reads megabytes.
    archive: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def frozen(self) -> bool:
        return self.activated_at is not None


@dataclass(frozen=True, slots=True)
class NewVersion:
    """What a new version is made of: its packed files and the reference's metadata."""

    archive: bytes
    file_count: int
    system_prompt: str | None
    name: str | None = None
    release_notes: str | None = None
    knowledge_files: list[str] | None = None
    created_by: str | None = None

    def replace_files_of(self, version: AgentVersion) -> None:
        """Give a (draft) version these files and their prompt."""
        version.archive = self.archive
        version.size = len(self.archive)
        version.sha256 = hashlib.sha256(self.archive).hexdigest()
        version.file_count = self.file_count
        version.system_prompt = self.system_prompt

    def row(self, agent: Agent, number: int) -> AgentVersion:
        now = utcnow()
        row = AgentVersion(
            id=uuid.uuid4(),
            agent_id=agent.id,
            tenant_id=agent.tenant_id,
            agent_name=agent.name,
            version_number=number,
            name=self.name or f"v{number}",
            release_notes=self.release_notes,
            knowledge_files=self.knowledge_files,
            created_by=self.created_by,
            is_active=False,
            created_at=now,
            updated_at=now,
        )
        self.replace_files_of(row)
        return row


class AgentVersionStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def publish(
        self,
        tenant_id: str,
        name: str,
        new: NewVersion,
        *,
        activate: bool,
        based_on: int | None = None,
        create: Callable[[], Agent] | None = None,
        change: Callable[[Agent], None] | None = None,
    ) -> tuple[Agent, AgentVersion]:
        """Add `new` as the agent's next-numbered version, in one transaction with the agent row locked; with
        `activate`, it becomes the active one and `agent.version` its number. `create` makes the agent when there
        is none yet (a first deploy), `change` edits the agent row in the same transaction.

        `based_on` is the active version the new files were built from: if another writer activated a different
        one meanwhile, Conflict, and nothing is written."""
        for _ in range(3):
            try:
                async with self._store.db() as db, db.begin():
                    agent = await db.scalar(
                        select(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name).with_for_update()
                    )
                    if agent is None:
                        if create is None:
                            raise NotFound(f"Agent not found: {name!r}", agent=name)
                        agent = create()
                        agent.version = 0
                        db.add(agent)
                        await db.flush()
                    elif based_on is not None and agent.version != based_on:
                        raise Conflict(
                            f"agent {name!r} changed while its new version was built (now version {agent.version})",
                            agent=name,
                        )
                    if change is not None:
                        change(agent)
                    highest = await db.scalar(
                        select(func.max(AgentVersion.version_number)).where(AgentVersion.agent_id == agent.id)
                    )
                    # Agents deployed before versions were kept count on from their own number.
                    version = new.row(agent, max(highest or 0, agent.version) + 1)
                    db.add(version)
                    if activate:
                        await self._activate(db, agent, version)
                return agent, version
            except IntegrityError:
                continue  # another server created the agent or took the number first: count again
        raise Conflict(f"agent {name!r} is changing too fast to add a version; try again", agent=name)

    @staticmethod
    async def _activate(db: AsyncSession, agent: Agent, version: AgentVersion) -> None:
        now = utcnow()
        await db.execute(
            update(AgentVersion)
            .where(AgentVersion.agent_id == agent.id, AgentVersion.id != version.id)
            .values(is_active=False)
        )
        version.is_active = True
        version.activated_at = version.activated_at or now
        version.updated_at = now
        agent.version = version.version_number
        agent.updated_at = now

    async def activate(self, agent: Agent, version_id: uuid.UUID) -> Agent:
        async with self._store.db() as db, db.begin():
            version = await db.get(AgentVersion, version_id)
            current = await db.get(Agent, agent.id, with_for_update=True)
            if version is None or current is None or version.agent_id != current.id:
                raise Conflict(f"version of agent {agent.name!r} is gone", agent=agent.name)
            await self._activate(db, current, version)
        return current

    async def list(self, agent_id: uuid.UUID) -> Sequence[AgentVersion]:
        query = (
            select(AgentVersion).where(AgentVersion.agent_id == agent_id).order_by(AgentVersion.version_number.desc())
        )
        async with self._store.db() as db:
            return (await db.scalars(query)).all()

    async def by_number(self, agent_id: uuid.UUID, number: int) -> AgentVersion | None:
        query = select(AgentVersion).where(AgentVersion.agent_id == agent_id, AgentVersion.version_number == number)
        async with self._store.db() as db:
            found: AgentVersion | None = await db.scalar(query)
        return found

    async def by_id(self, agent_id: uuid.UUID, version_id: uuid.UUID) -> AgentVersion | None:
        async with self._store.db() as db:
            found = await db.get(AgentVersion, version_id)
        return found if found is not None and found.agent_id == agent_id else None

    async def files_of(self, agent_id: uuid.UUID, number: int) -> bytes | None:
        query = select(AgentVersion.archive).where(
            AgentVersion.agent_id == agent_id, AgentVersion.version_number == number
        )
        async with self._store.db() as db:
            archive: bytes | None = await db.scalar(query)
        return archive

    async def save(self, version: AgentVersion) -> AgentVersion:
        version.updated_at = utcnow()
        async with self._store.db() as db, db.begin():
            merged = await db.merge(version)
        return merged

    async def delete(self, version: AgentVersion) -> bool:
        """Delete a version unless it is the active one (then False: nothing is deleted)."""
        async with self._store.db() as db, db.begin():
            found = await db.get(AgentVersion, version.id, with_for_update=True)
            if found is None:
                return True
            if found.is_active:
                return False
            await db.delete(found)
        return True
