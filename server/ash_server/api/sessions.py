"""/api/sessions: the session lifecycle, message streaming (SSE), history and timeline."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ..errors import PayloadTooLarge
from ..sessions.service import TurnOptions
from ..sessions.turn import Turn
from .deps import PrincipalDep, ServicesDep
from .schemas import (
    EventPublic,
    EventsResponse,
    LogEntry,
    LogsResponse,
    MessageCreate,
    MessagePublic,
    MessagesResponse,
    SessionConfigUpdate,
    SessionCreate,
    SessionPublic,
    SessionResponse,
    SessionsResponse,
)

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
SESSION_STATUSES = "^(starting|active|paused|stopped|ended|error)$"


def _frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


async def _stream(turn: Turn) -> AsyncIterator[bytes]:
    async for frame in turn.subscribe():
        yield _frame(frame.event, frame.data)


@router.post("", status_code=201, response_model=SessionResponse)
async def create_session(body: SessionCreate, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    options = body.model_dump(by_alias=True, exclude={"agent", "credential_id"}, exclude_none=True)
    session = await services.sessions.create(principal.tenant_id, body.agent, options)
    return SessionResponse(session=SessionPublic.of(session))


@router.get("", response_model=SessionsResponse)
async def list_sessions(
    principal: PrincipalDep,
    services: ServicesDep,
    agent: str | None = Query(None, max_length=255),
    status: str | None = Query(None, pattern=SESSION_STATUSES),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> SessionsResponse:
    sessions = await services.sessions.list_sessions(
        principal.tenant_id, agent=agent, status=status, limit=limit, offset=offset
    )
    return SessionsResponse(sessions=[SessionPublic.of(s) for s in sessions])


@router.get("/{session_id}", response_model=SessionResponse)
async def get_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    return SessionResponse(session=SessionPublic.of(await services.sessions.get(principal.tenant_id, session_id)))


@router.patch("/{session_id}/config", response_model=SessionResponse)
async def update_session_config(
    session_id: uuid.UUID, body: SessionConfigUpdate, principal: PrincipalDep, services: ServicesDep
) -> SessionResponse:
    changes = body.model_dump(by_alias=True, exclude_none=True)
    session = await services.sessions.update_config(principal.tenant_id, session_id, changes)
    return SessionResponse(session=SessionPublic.of(session))


@router.post(
    "/{session_id}/messages",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The turn as Server-Sent Events."}},
)
async def send_message(
    session_id: uuid.UUID, body: MessageCreate, principal: PrincipalDep, services: ServicesDep
) -> StreamingResponse:
    limit = services.settings.max_message_chars
    if isinstance(body.content, str) and len(body.content) > limit:
        raise PayloadTooLarge(f"message content exceeds {limit} characters", limit=limit)
    content: str | list[dict[str, Any]] = (
        body.content if isinstance(body.content, str) else [b.model_dump(by_alias=True) for b in body.content]
    )
    options = TurnOptions(
        include_partial=body.include_partial_messages,
        model=body.model,
        max_turns=body.max_turns,
        max_budget_usd=body.max_budget_usd,
        effort=body.effort,
        thinking=body.thinking.model_dump(by_alias=True, exclude_none=True) if body.thinking else None,
        output_format=body.output_format,
    )
    turn = await services.sessions.send(principal.tenant_id, session_id, content, options)
    return StreamingResponse(_stream(turn), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/{session_id}/messages", response_model=MessagesResponse)
async def list_messages(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: int = Query(100, ge=1, le=1000),
    after: int = Query(0, ge=0),
) -> MessagesResponse:
    await services.sessions.get(principal.tenant_id, session_id)
    messages = await services.store.list_messages(principal.tenant_id, session_id, after=after, limit=limit)
    return MessagesResponse(messages=[MessagePublic.of(m) for m in messages])


@router.get("/{session_id}/events", response_model=EventsResponse)
async def list_events(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: int = Query(100, ge=1, le=1000),
    after: int = Query(0, ge=0),
    type: str | None = Query(None, max_length=32),
) -> EventsResponse:
    await services.sessions.get(principal.tenant_id, session_id)
    events = await services.store.list_events(principal.tenant_id, session_id, after=after, limit=limit, kind=type)
    return EventsResponse(events=[EventPublic.of(e) for e in events])


@router.get("/{session_id}/logs", response_model=LogsResponse)
async def session_logs(
    session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep, after: int = Query(0, ge=0)
) -> LogsResponse:
    await services.sessions.get(principal.tenant_id, session_id)
    sandbox = services.sessions.sandbox_of(session_id)
    if sandbox is None:
        return LogsResponse(logs=[], source="none")
    return LogsResponse(logs=[LogEntry.model_validate(e) for e in sandbox.log_entries(after)], source="sandbox")


@router.post("/{session_id}/pause", response_model=SessionResponse)
async def pause_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    return SessionResponse(session=SessionPublic.of(await services.sessions.pause(principal.tenant_id, session_id)))


@router.post("/{session_id}/resume", response_model=SessionResponse)
async def resume_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    return SessionResponse(session=SessionPublic.of(await services.sessions.resume(principal.tenant_id, session_id)))


@router.post("/{session_id}/stop", response_model=SessionResponse)
async def stop_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    return SessionResponse(session=SessionPublic.of(await services.sessions.stop(principal.tenant_id, session_id)))


@router.delete("/{session_id}", response_model=SessionResponse)
async def end_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    return SessionResponse(session=SessionPublic.of(await services.sessions.end(principal.tenant_id, session_id)))
