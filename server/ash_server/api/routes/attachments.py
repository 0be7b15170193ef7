"""Attachments (the reference's routes): upload to a session, list a session's, download and delete one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self
from urllib.parse import quote

from fastapi import APIRouter, Response
from pydantic import Field

from ...store.attachments import Attachment
from ..deps import PrincipalDep, ServicesDep
from ..schemas import Public, Schema

router = APIRouter(tags=["attachments"])


class AttachmentUpload(Schema):
    filename: str = Field(min_length=1, max_length=1024)
    content: str = Field(description="The file, base64-encoded.")
    mime_type: str = Field("application/octet-stream", max_length=255)
    message_id: uuid.UUID | None = Field(None, description="The message it belongs to (optional).")


class AttachmentPublic(Public):
    id: uuid.UUID
    tenant_id: str
    message_id: str
    session_id: uuid.UUID
    filename: str
    mime_type: str
    size: int
    storage_path: str = Field(description="Where its bytes are, in the attachment store.")
    created_at: datetime

    @classmethod
    def of(cls, row: Attachment, **values: Any) -> Self:
        return super().of(row, storage_path=row.storage_key, **values)


class AttachmentResponse(Schema):
    attachment: AttachmentPublic


class AttachmentsResponse(Schema):
    attachments: list[AttachmentPublic]


@router.post("/api/sessions/{session_id}/attachments", status_code=201, response_model=AttachmentResponse)
async def upload_attachment(
    session_id: uuid.UUID, body: AttachmentUpload, principal: PrincipalDep, services: ServicesDep
) -> AttachmentResponse:
    await services.sessions.get(principal.tenant_id, session_id)  # 404 for another tenant's
    row = await services.attachments.upload(
        principal.tenant_id,
        session_id,
        filename=body.filename,
        content_b64=body.content,
        mime_type=body.mime_type,
        message_id=str(body.message_id) if body.message_id else None,
    )
    return AttachmentResponse(attachment=AttachmentPublic.of(row))


@router.get("/api/sessions/{session_id}/attachments", response_model=AttachmentsResponse)
async def list_attachments(
    session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> AttachmentsResponse:
    await services.sessions.get(principal.tenant_id, session_id)
    rows = await services.attachments.of_session(principal.tenant_id, session_id)
    return AttachmentsResponse(attachments=[AttachmentPublic.of(r) for r in rows])


@router.get(
    "/api/attachments/{attachment_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file as uploaded."}},
)
async def download_attachment(attachment_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    row = await services.attachments.get(principal.tenant_id, attachment_id)
    data = await services.attachments.read(row)
    return Response(
        data,
        media_type=row.mime_type,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.filename, safe='')}",
        },
    )


@router.delete("/api/attachments/{attachment_id}", status_code=204, response_class=Response)
async def delete_attachment(attachment_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    await services.attachments.delete(principal.tenant_id, attachment_id)
    return Response(status_code=204)
