"""/api/sessions/{id}/files: list and read the files of a session's workspace (read side)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Response

from ..paths import DataDir
from ..workspace import list_files, read_file
from .deps import PrincipalDep, ServicesDep
from .schemas import SessionFile, SessionFilesResponse

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

MAX_RAW_BYTES = 100 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024


async def _workspace(services: ServicesDep, tenant_id: str, session_id: uuid.UUID) -> tuple[Path, str]:
    await services.sessions.get(tenant_id, session_id)  # 404 for unknown sessions and other tenants' sessions
    sandbox = services.sessions.sandbox_of(session_id)
    source = "sandbox" if sandbox is not None and sandbox.alive else "snapshot"
    return DataDir(services.settings.data_dir).workspace(tenant_id, str(session_id)), source


@router.get("/{session_id}/files", response_model=SessionFilesResponse)
async def list_session_files(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    include_hidden: Literal["true", "false"] = Query("true", alias="includeHidden"),
) -> SessionFilesResponse:
    root, source = await _workspace(services, principal.tenant_id, session_id)
    files = await asyncio.to_thread(list_files, root, include_hidden=include_hidden == "true")
    return SessionFilesResponse(
        files=[SessionFile(path=f.path, size=f.size, modified_at=f.modified_at) for f in files],
        source="sandbox" if source == "sandbox" else "snapshot",
    )


@router.get("/{session_id}/files/{file_path:path}", response_model=None)
async def read_session_file(
    session_id: uuid.UUID,
    file_path: str,
    principal: PrincipalDep,
    services: ServicesDep,
    format: Literal["raw", "json"] = Query("raw"),
) -> Response | dict[str, object]:
    root, source = await _workspace(services, principal.tenant_id, session_id)
    limit = MAX_JSON_BYTES if format == "json" else MAX_RAW_BYTES
    data = await asyncio.to_thread(read_file, root, file_path, max_bytes=limit)
    if format == "raw":
        return Response(data, media_type="application/octet-stream", headers={"X-Ash-Source": source})
    try:
        content, encoding = data.decode(), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode(), "base64"
    return {"path": file_path, "content": content, "encoding": encoding, "size": len(data), "source": source}
