"""/api/sessions/{id}/files and /workspace: a session's workspace, read and written, live or from its snapshot.

Reads come from the live sandbox's folder, or (no sandbox here) from this server's copy, restored from the latest
snapshot first when it is missing or out of date. Writes go to this server's up-to-date copy (live or not) and
are snapshotted afterwards; every path is confined to the workspace (workspace.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from ...agents import UploadedFile, decode_files
from ...errors import Invalid, PayloadTooLarge
from ...paths import relative_path
from ...workspace import delete_path, extract_bundle, list_files, pack_workspace, read_file, write_file
from ..deps import PrincipalDep, ServicesDep
from ..schemas import (
    DeletedResponse,
    SessionFile,
    SessionFilesResponse,
    SessionFilesUpload,
    WorkspaceUpload,
    WorkspaceUploadResponse,
    WrittenResponse,
)

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

MAX_RAW_BYTES = 100 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024


async def _workspace(services: ServicesDep, tenant_id: str, session_id: uuid.UUID) -> tuple[Path, str]:
    # 404 for unknown sessions and other tenants' sessions
    return await services.sessions.workspace_for_read(tenant_id, session_id)


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


# A file read: its bytes as they are (`format=raw`), or in JSON (`format=json`, file_json's object).
FILE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file: raw bytes, or `{path, content, encoding, size}` with `format=json`.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def file_json(path: str, data: bytes) -> dict[str, object]:
    """A file in a JSON answer (`format=json`): UTF-8 text as it is, anything else base64."""
    try:
        content, encoding = data.decode(), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode(), "base64"
    return {"path": path, "content": content, "encoding": encoding, "size": len(data)}


@router.get("/{session_id}/files/{file_path:path}", response_model=None, responses=FILE_RESPONSE)
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
    return {**file_json(file_path, data), "source": source}


@router.post("/{session_id}/files", response_model=WrittenResponse)
async def upload_session_files(
    session_id: uuid.UUID, body: SessionFilesUpload, principal: PrincipalDep, services: ServicesDep
) -> WrittenResponse:
    """Write files into the workspace (under `targetPath`), replacing existing ones. All or nothing is checked
    first: paths, base64, total size (ASH_MAX_UPLOAD_BYTES)."""
    target = PurePosixPath() if body.target_path in ("", ".") else relative_path(body.target_path)
    items = [UploadedFile((target / relative_path(f.path)).as_posix(), f.content) for f in body.files]
    decoded = decode_files(items, services.settings.max_upload_bytes)

    def change(root: Path, owner: tuple[int, int] | None) -> list[str]:
        for path, data in decoded:
            write_file(root, path, data, owner)
        return [path for path, _ in decoded]

    written = await services.sessions.change_workspace(principal.tenant_id, session_id, change)
    return WrittenResponse(written=written)


@router.delete("/{session_id}/files/{file_path:path}", response_model=DeletedResponse)
async def delete_session_file(
    session_id: uuid.UUID, file_path: str, principal: PrincipalDep, services: ServicesDep
) -> DeletedResponse:
    """Delete a file, a symlink (never its target) or a directory with everything in it."""
    relative_path(file_path)

    def change(root: Path, owner: tuple[int, int] | None) -> None:
        delete_path(root, file_path)

    await services.sessions.change_workspace(principal.tenant_id, session_id, change)
    return DeletedResponse(deleted=True)


@router.get(
    "/{session_id}/workspace",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}, "description": "The workspace as a tar.gz."}},
)
async def download_workspace(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    """The workspace as a tar.gz (symlinks as symlinks), built in a temporary file and streamed from it."""
    root, source = await _workspace(services, principal.tenant_id, session_id)
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the stream below)
    try:
        await asyncio.to_thread(pack_workspace, root, spool)
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def chunks() -> Iterator[bytes]:
        with contextlib.closing(spool):
            while chunk := spool.read(256 * 1024):
                yield chunk

    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="workspace-{session_id}.tar.gz"',
        "X-Ash-Source": source,
    }
    return StreamingResponse(chunks(), media_type="application/gzip", headers=headers)


@router.post("/{session_id}/workspace", response_model=WorkspaceUploadResponse)
async def upload_workspace(
    session_id: uuid.UUID, body: WorkspaceUpload, principal: PrincipalDep, services: ServicesDep
) -> WorkspaceUploadResponse:
    """Extract a tar.gz into the workspace. Only regular files and directories with relative paths are
    accepted (no `..`, absolute paths, links or devices); the bundle is refused whole if any entry is not, or
    if it is larger than ASH_MAX_UPLOAD_BYTES (compressed or not)."""
    limit = services.settings.max_upload_bytes
    if len(body.bundle) > (limit + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(f"bundle exceeds {limit} bytes", limit=limit)
    try:
        bundle = base64.b64decode(body.bundle, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("bundle is not valid base64") from exc

    def change(root: Path, owner: tuple[int, int] | None) -> int:
        return extract_bundle(root, bundle, owner, max_bytes=limit)

    written = await services.sessions.change_workspace(principal.tenant_id, session_id, change)
    return WorkspaceUploadResponse(message=f"extracted {written} file(s)", written=written)
