"""Attachments: files a client uploads to a session (the reference's `/api/sessions/{id}/attachments`), kept in the
snapshot store (`ASH_SNAPSHOT_URL`: local, S3 or GCS; without one, `<data dir>/attachments`) under
`attachments/<tenant>/<session>/<id>`, listed from the database, and turned into the model's content blocks when a
message names them. Removed when their session is deleted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import Invalid, NotConfigured, NotFound, PayloadTooLarge, UnsupportedMediaType
from .snapshots import SnapshotMissing, SnapshotStore
from .store.attachments import UNLINKED, Attachment, AttachmentStore
from .store.models import utcnow

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# What the model takes as a document block: PDF as base64, plain text as text.
DOCUMENT_TYPES = frozenset({"application/pdf", "text/plain", "text/markdown", "text/csv"})
# Accepted but only stored (the agent reads them with the files API's help, or the client downloads them again).
STORED_TYPES = frozenset({"application/json", "application/octet-stream", "application/zip", "text/html"})
ALLOWED_TYPES = IMAGE_TYPES | DOCUMENT_TYPES | STORED_TYPES


def clean_filename(raw: str) -> str:
    """The last path part, without NULs (as the reference); `unnamed` when nothing is left."""
    name = PurePosixPath(raw.replace("\\", "/").replace("\0", "")).name
    return name if name not in ("", ".", "..") else "unnamed"


class AttachmentService:
    def __init__(self, rows: AttachmentStore, blobs: SnapshotStore | None, *, max_bytes: int, scratch: Path) -> None:
        """`blobs` None: no store every server reaches (a coordinator deployment without ASH_SNAPSHOT_URL)."""
        self._rows = rows
        self._store = blobs
        self._max_bytes = max_bytes
        self._scratch = scratch

    @property
    def _blobs(self) -> SnapshotStore:
        if self._store is None:
            raise NotConfigured(
                "attachments on coordinators and runners need ASH_SNAPSHOT_URL: a store every machine reaches"
            )
        return self._store

    async def upload(
        self,
        tenant_id: str,
        session_id: uuid.UUID,
        *,
        filename: str,
        content_b64: str,
        mime_type: str,
        message_id: str | None,
    ) -> Attachment:
        blobs = self._blobs  # 503 before anything is decoded when there is nowhere to keep it
        media = mime_type.split(";")[0].strip().lower()
        if media not in ALLOWED_TYPES:
            raise UnsupportedMediaType(
                f"Unsupported attachment type {mime_type!r}: allowed are {', '.join(sorted(ALLOWED_TYPES))}",
                mime_type=mime_type,
            )
        if len(content_b64) > (self._max_bytes + 2) // 3 * 4 + 4:
            raise PayloadTooLarge(f"Attachment too large (max {self._max_bytes} bytes)", limit=self._max_bytes)
        data = await asyncio.to_thread(_decode, content_b64)
        if not data:
            raise Invalid("Empty attachment content")
        if len(data) > self._max_bytes:
            raise PayloadTooLarge(f"Attachment too large (max {self._max_bytes} bytes)", limit=self._max_bytes)
        attachment_id = uuid.uuid4()
        key = f"attachments/{tenant_id}/{session_id}/{attachment_id}"
        await self._put(key, data)
        row = Attachment(
            id=attachment_id,
            tenant_id=tenant_id,
            session_id=session_id,
            message_id=message_id or UNLINKED,
            filename=clean_filename(filename),
            mime_type=media,
            size=len(data),
            storage_key=key,
            created_at=utcnow(),
        )
        try:
            return await self._rows.add(row)
        except Exception:
            await blobs.delete(key)  # no object without its row
            raise

    async def get(self, tenant_id: str, attachment_id: uuid.UUID) -> Attachment:
        row = await self._rows.get(tenant_id, attachment_id)
        if row is None:
            raise NotFound(f"Attachment not found: {attachment_id}")
        return row

    async def read(self, row: Attachment) -> bytes:
        with tempfile.TemporaryDirectory(dir=self._scratch) as folder:
            target = Path(folder) / "blob"
            try:
                await self._blobs.get(row.storage_key, target)
            except SnapshotMissing as exc:
                raise NotFound(f"Attachment not found: the file of {row.id} is missing from the store") from exc
            return await asyncio.to_thread(target.read_bytes)

    async def of_session(self, tenant_id: str, session_id: uuid.UUID) -> Sequence[Attachment]:
        return await self._rows.for_session(tenant_id, session_id)

    async def delete(self, tenant_id: str, attachment_id: uuid.UUID) -> None:
        row = await self.get(tenant_id, attachment_id)
        await self._rows.delete(row.id)
        await self._blobs.delete(row.storage_key)

    async def delete_for_session(self, tenant_id: str, session_id: uuid.UUID) -> int:
        rows = await self._rows.for_session(tenant_id, session_id)
        if not rows:
            return 0
        for row in rows:
            await self._rows.delete(row.id)
            await self._blobs.delete(row.storage_key)
        return len(rows)

    async def content_blocks(self, tenant_id: str, session_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[Any]:
        """The model's content blocks for the attachments a message names (each of this session)."""
        blocks: list[Any] = []
        for attachment_id in ids:
            row = await self.get(tenant_id, attachment_id)
            if row.session_id != session_id:
                raise NotFound(f"Attachment not found: {attachment_id} belongs to another session")
            data = await self.read(row)
            blocks.append(_block(row, data))
        return blocks

    async def _put(self, key: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(dir=self._scratch) as folder:
            source = Path(folder) / "blob"
            await asyncio.to_thread(source.write_bytes, data)
            await self._blobs.put(key, source)


def _decode(content_b64: str) -> bytes:
    try:
        return base64.b64decode(content_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("content is not valid base64") from exc


def _block(row: Attachment, data: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    if row.mime_type in IMAGE_TYPES:
        return {"type": "image", "source": {"type": "base64", "media_type": row.mime_type, "data": encoded}}
    if row.mime_type == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": encoded}
        return {"type": "document", "source": source, "title": row.filename}
    text = data.decode("utf-8", errors="replace")
    if row.mime_type in DOCUMENT_TYPES:
        source = {"type": "text", "media_type": "text/plain", "data": text}
        return {"type": "document", "source": source, "title": row.filename}
    return {"type": "text", "text": f"[attachment {row.filename} ({row.mime_type}, {row.size} bytes)]"}
