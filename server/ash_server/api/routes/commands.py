"""POST /api/sessions/{id}/exec: run a command inside a session's live sandbox, with a timeout."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from ...errors import Invalid
from ..deps import PrincipalDep, ServicesDep
from ..schemas import ExecCreate, ExecResponse

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

DEFAULT_TIMEOUT_MS = 30_000


@router.post("/{session_id}/exec", response_model=ExecResponse)
async def exec_in_sandbox(
    session_id: uuid.UUID, body: ExecCreate, principal: PrincipalDep, services: ServicesDep
) -> ExecResponse:
    """Runs `bash -c <command>` in the workspace, in the same sandbox as the agent (its user, namespaces, limits
    and environment). The session must have a live sandbox: a command never starts one."""
    await services.sessions.get(principal.tenant_id, session_id)
    timeout_ms = body.timeout or min(DEFAULT_TIMEOUT_MS, services.settings.exec_max_timeout_ms)
    if timeout_ms > services.settings.exec_max_timeout_ms:
        raise Invalid(
            f"timeout {timeout_ms} ms is above this server's maximum of {services.settings.exec_max_timeout_ms} ms",
            timeout=timeout_ms,
        )
    sandbox = services.sessions.sandbox_of(session_id)
    if sandbox is None or not sandbox.alive:
        raise Invalid(
            f"session {session_id} has no running sandbox; send it a message or resume it first",
            session_id=str(session_id),
        )
    result = await services.sandboxes.exec(sandbox, body.command, timeout_ms / 1000)
    return ExecResponse.of(result)
