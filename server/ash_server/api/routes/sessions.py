"""/api/sessions: the session lifecycle, message streaming (SSE), history and timeline."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query

from ...errors import Invalid, PayloadTooLarge
from ...sessions.options import TurnOptions
from ...sessions.turn import Subscription
from ...states import SessionStatus
from ..deps import MESSAGE_RATE_LIMIT, SESSION_RATE_LIMIT, PrincipalDep, Services, ServicesDep
from ..schemas import (
    EventPublic,
    EventsResponse,
    InterruptResponse,
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
    SessionsWithTotalResponse,
)
from ..schemas.base import BIGINT_MAX
from ..sse import EventStream

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The turn as Server-Sent Events (see docs/api.md)."}
}


def event_stream(
    services: Services,
    subscription: Subscription,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
) -> EventStream:
    settings = services.settings
    return EventStream(
        subscription,
        keepalive_s=settings.sse_keepalive_ms / 1000,
        write_timeout_s=settings.sse_write_timeout_ms / 1000,
        retry_ms=settings.sse_retry_ms,
        on_disconnect=on_disconnect,
        counter=services.streams,
    )


def _check_size(body: MessageCreate, services: Services) -> str | list[dict[str, Any]]:
    if isinstance(body.content, str):
        limit = services.settings.max_message_chars
        if len(body.content) > limit:
            raise PayloadTooLarge(f"message content exceeds {limit} characters", limit=limit)
        return body.content
    attachments = 0
    blocks = []
    for block in body.content:
        data = block.model_dump(by_alias=True, exclude_none=True)
        if block.type in ("image", "document"):
            raw = data["source"]["data"]
            try:
                attachments += len(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise Invalid(f"{block.type} block: source.data is not valid base64") from exc
        blocks.append(data)
    limit = services.settings.max_attachment_bytes
    if attachments > limit:
        raise PayloadTooLarge(f"attachments exceed {limit} bytes", limit=limit)
    return blocks


@router.post("", status_code=201, response_model=SessionResponse, dependencies=[SESSION_RATE_LIMIT])
async def create_session(body: SessionCreate, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    options = body.model_dump(by_alias=True, exclude={"agent", "credential_id"}, exclude_none=True)
    if body.credential_id is not None:
        # Unknown (404), unusable (400) or undecryptable (503): refused before anything is created.
        auth = await services.credentials.upstream_auth(principal.tenant_id, body.credential_id)
        options["credentialId"] = auth.credential_id
    session = await services.sessions.create(principal.tenant_id, body.agent, options)
    return SessionResponse(session=SessionPublic.of(session))


@router.get("", response_model=SessionsResponse | SessionsWithTotalResponse)
async def list_sessions(
    principal: PrincipalDep,
    services: ServicesDep,
    agent: str | None = Query(None, max_length=255),
    status: SessionStatus | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=BIGINT_MAX),
    include_total: bool = Query(False, alias="includeTotal", description="Add `total`: how many sessions match."),
) -> SessionsResponse | SessionsWithTotalResponse:
    sessions = await services.sessions.list_sessions(
        principal.tenant_id, agent=agent, status=status, limit=limit, offset=offset
    )
    page = [SessionPublic.of(s) for s in sessions]
    if not include_total:
        return SessionsResponse(sessions=page)
    total = await services.sessions.count_sessions(principal.tenant_id, agent=agent, status=status)
    return SessionsWithTotalResponse(sessions=page, total=total)


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
    status_code=200,
    response_class=EventStream,
    responses=SSE_RESPONSE,
    dependencies=[MESSAGE_RATE_LIMIT],
)
async def send_message(
    session_id: uuid.UUID,
    body: MessageCreate,
    principal: PrincipalDep,
    services: ServicesDep,
    on_disconnect: Annotated[Literal["continue", "interrupt"] | None, Query(alias="onDisconnect")] = None,
) -> EventStream:
    content = _check_size(body, services)
    if body.attachments:
        await services.sessions.get(principal.tenant_id, session_id)
        named = await services.attachments.content_blocks(principal.tenant_id, session_id, body.attachments)
        content = [*([{"type": "text", "text": content}] if isinstance(content, str) else content), *named]
    options = TurnOptions(
        model=body.model,
        max_turns=body.max_turns,
        max_budget_usd=body.max_budget_usd,
        effort=body.effort,
        thinking=body.thinking.sdk() if body.thinking else None,
        output_format=body.output_format,
    )
    sessions = services.sessions
    turn = await sessions.send(principal.tenant_id, session_id, content, options, auto_resume=body.auto_resume)
    subscription = await sessions.subscribe(
        principal.tenant_id,
        session_id,
        after=turn.first_seq - 1,
        include_partial=body.include_partial_messages,
        turn=turn,
    )
    policy = on_disconnect or body.on_disconnect

    async def interrupt_if_asked() -> None:
        if policy == "interrupt" and not turn.finished:
            await sessions.interrupt(principal.tenant_id, session_id)

    return event_stream(services, subscription, interrupt_if_asked)


@router.get("/{session_id}/stream", status_code=200, response_class=EventStream, responses=SSE_RESPONSE)
async def reattach(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    last_event_id_header: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=BIGINT_MAX)] = None,
    last_event_id: Annotated[int | None, Query(alias="lastEventId", ge=0, le=BIGINT_MAX)] = None,
    include_partial: Annotated[bool, Query(alias="includePartialMessages")] = False,
    follow: bool = False,
) -> EventStream:
    """Replay what a client missed after `Last-Event-ID`, then follow the running turn until `done`.

    With `follow=true` the stream stays open and carries the session's later turns too (what `ash session tail`
    uses).
    """
    after = last_event_id_header if last_event_id_header is not None else last_event_id
    subscription = await services.sessions.subscribe(
        principal.tenant_id, session_id, after=after, include_partial=include_partial, follow=follow
    )
    return event_stream(services, subscription)


@router.post("/{session_id}/interrupt", response_model=InterruptResponse)
async def interrupt_turn(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> InterruptResponse:
    turn = await services.sessions.interrupt(principal.tenant_id, session_id)
    return InterruptResponse(interrupted=turn is not None, turn_id=turn.id if turn is not None else None)


@router.get("/{session_id}/messages", response_model=MessagesResponse)
async def list_messages(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: int = Query(100, ge=1, le=1000),
    after: int = Query(0, ge=0, le=BIGINT_MAX),
) -> MessagesResponse:
    await services.sessions.get(principal.tenant_id, session_id)
    messages = await services.sessions.history.messages(principal.tenant_id, session_id, after=after, limit=limit)
    return MessagesResponse(messages=[MessagePublic.of(m) for m in messages])


@router.get("/{session_id}/events", response_model=EventsResponse)
async def list_events(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: int = Query(100, ge=1, le=1000),
    after: int = Query(0, ge=0, le=BIGINT_MAX),
    type: str | None = Query(None, max_length=32),
) -> EventsResponse:
    await services.sessions.get(principal.tenant_id, session_id)
    events = await services.sessions.history.events(
        principal.tenant_id, session_id, after=after, limit=limit, kind=type
    )
    return EventsResponse(events=[EventPublic.of(e) for e in events])


@router.get("/{session_id}/logs", response_model=LogsResponse)
async def session_logs(
    session_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    after: int = Query(
        0, ge=-1, le=BIGINT_MAX, description="Entries with an index above this; -1 (the reference's default) or 0: all."
    ),
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


@router.post("/{session_id}/fork", status_code=201, response_model=SessionResponse, dependencies=[SESSION_RATE_LIMIT])
async def fork_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    """A new paused session (`parentSessionId`) whose workspace, conversation and messages are copies of this
    one's now; resume it to continue from here, independently. 409 while a turn runs."""
    return SessionResponse(session=SessionPublic.of(await services.sessions.fork(principal.tenant_id, session_id)))


@router.delete("/{session_id}", response_model=SessionResponse)
async def end_session(session_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> SessionResponse:
    session = await services.sessions.end(principal.tenant_id, session_id)
    await services.attachments.delete_for_session(principal.tenant_id, session_id)  # removed with the session
    return SessionResponse(session=SessionPublic.of(session))
