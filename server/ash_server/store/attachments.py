"""Attachments: files uploaded to a session, their rows here and their bytes in the snapshot store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, Uuid, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow
from .repository import Store

# The reference's `messageId` of an attachment not (yet) tied to a message.
UNLINKED = "unlinked"


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_tenant_session", "tenant_id", "session_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255))
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("sessions.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64), default=UNLINKED)
    filename: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    # The object's key in the attachment store (the reference's `storagePath`).
    storage_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AttachmentStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, attachment: Attachment) -> Attachment:
        async with self._store.db() as db, db.begin():
            db.add(attachment)
        return attachment

    async def get(self, tenant_id: str, attachment_id: uuid.UUID) -> Attachment | None:
        async with self._store.db() as db:
            found = await db.get(Attachment, attachment_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def for_session(self, tenant_id: str, session_id: uuid.UUID) -> Sequence[Attachment]:
        query = (
            select(Attachment)
            .where(Attachment.tenant_id == tenant_id, Attachment.session_id == session_id)
            .order_by(Attachment.created_at, Attachment.id)
        )
        async with self._store.db() as db:
            return (await db.scalars(query)).all()

    async def delete(self, attachment_id: uuid.UUID) -> None:
        async with self._store.db() as db, db.begin():
            await db.execute(delete(Attachment).where(Attachment.id == attachment_id))
