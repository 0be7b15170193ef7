"""A session's files, workspace archive and exec."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import BASE64, BIGINT_MAX, Public, Schema

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
    content: str = Field(description="File content, base64.", json_schema_extra=BASE64)
    mime_type: str | None = Field(None, description="Accepted and ignored.")


class SessionFilesUpload(Schema):
    files: list[SessionFileUpload] = Field(min_length=1, max_length=10_000)
    target_path: str = Field(".", max_length=4096, description="A folder of the workspace to write under.")


class WrittenResponse(Schema):
    written: list[str] = Field(description="The workspace paths written.")


class DeletedResponse(Schema):
    deleted: bool


class WorkspaceUpload(Schema):
    bundle: str = Field(description="A tar.gz, base64: regular files and directories only.", json_schema_extra=BASE64)


class WorkspaceUploadResponse(Schema):
    message: str
    written: int = Field(description="Files written.")


class ExecCreate(Schema):
    command: str = Field(min_length=1, max_length=100_000, description="Run with bash -c in the workspace.")
    timeout: int | None = Field(
        None,
        ge=1,
        le=BIGINT_MAX,
        description="Milliseconds (default 30000 or ASH_EXEC_MAX_TIMEOUT_MS if lower; at most that).",
    )


class ExecResponse(Public):
    exit_code: int = Field(description="The command's exit status; 124 when it timed out, 128+N when killed by N.")
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool = Field(description="stdout or stderr was longer than 1 MiB and was cut.")
