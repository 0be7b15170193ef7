"""/api/queue: prompts enqueued for an agent or a session, run by the queue worker (sessions/queue_worker.py).

The reference's routes and shapes; ours adds an idempotency key (`Idempotency-Key` header or `idempotencyKey`),
the answer of a finished item (`result`), and lets an item name only its session (`agentName` is then the
session's agent).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import ConfigDict, Field

from ...errors import Conflict, Invalid, NotFound
from ...states import SessionStatus
from ...store.queue import QueueItem, QueueRepository, QueueStatus
from ..deps import PrincipalDep, ServicesDep
from ..schemas import Public, Schema

router = APIRouter(prefix="/api/queue", tags=["queue"])

KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, as HTTP header values go


class QueueEnqueue(Schema):
    # agentName, or a sessionId whose agent it is (the handler says so otherwise).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["agentName"], "properties": {"agentName": {"type": "string"}}},
                {"required": ["sessionId"], "properties": {"sessionId": {"type": "string"}}},
            ]
        }
    )

    agent_name: str | None = Field(
        None, min_length=1, max_length=255, description="Required unless `sessionId` names the session."
    )
    prompt: str = Field(min_length=1)
    session_id: uuid.UUID | None = Field(None, description="Run in this session instead of a new one.")
    priority: int = Field(0, ge=0, le=1_000_000, description="Higher runs first.")
    max_retries: int = Field(3, ge=0, le=100, description="Attempts in all before the item is failed.")
    idempotency_key: str | None = Field(
        None, pattern=KEY_PATTERN, description="A retried enqueue with the same key returns the first item."
    )


class QueueItemPublic(Public):
    id: uuid.UUID
    tenant_id: str
    session_id: uuid.UUID | None
    agent_name: str
    prompt: str
    status: QueueStatus
    priority: int
    retry_count: int
    max_retries: int
    error: str | None
    result: str | None = Field(description="The answer of a completed item (ours).")
    idempotency_key: str | None
    retry_after: datetime | None = Field(description="A pending retry waits until then (ours).")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class QueueItemResponse(Schema):
    item: QueueItemPublic


class QueueListResponse(Schema):
    items: list[QueueItemPublic]


class QueueStats(Schema):
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int


class QueueStatsResponse(Schema):
    stats: QueueStats


# The fields of an enqueue the item takes as they are; a replay (the same idempotency key) must repeat them.
ITEM_FIELDS = {"session_id", "prompt", "priority", "max_retries"}


def _same_request(item: QueueItem, body: QueueEnqueue, agent_name: str) -> bool:
    return item.agent_name == agent_name and all(getattr(item, f) == getattr(body, f) for f in ITEM_FIELDS)


@router.post(
    "",
    status_code=201,
    response_model=QueueItemResponse,
    responses={200: {"model": QueueItemResponse, "description": "A replay (same Idempotency-Key): the first item."}},
)
async def enqueue(
    body: QueueEnqueue,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    idempotency_header: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=KEY_PATTERN, include_in_schema=True)
    ] = None,
) -> QueueItemResponse:
    tenant = principal.tenant_id
    key = idempotency_header or body.idempotency_key
    if body.idempotency_key and idempotency_header and body.idempotency_key != idempotency_header:
        raise Invalid("the Idempotency-Key header and idempotencyKey differ")
    agent_name = body.agent_name
    if body.session_id is not None:
        session = await services.store.get_session(tenant, body.session_id)
        if session is None:
            raise NotFound(f"Session not found: no session {body.session_id}")
        if session.status == SessionStatus.ENDED:
            raise Invalid(f"Session has ended: session {body.session_id} takes no more prompts")
        if agent_name is not None and agent_name != session.agent_name:
            raise Invalid(f"session {body.session_id} runs agent {session.agent_name!r}, not {agent_name!r}")
        agent_name = session.agent_name
    if agent_name is None:
        raise Invalid("agentName is required (or a sessionId)")
    if await services.store.get_agent(tenant, agent_name) is None:
        raise NotFound(f"Agent not found: no agent named {agent_name!r}")
    item = QueueItem(
        id=uuid.uuid4(),
        tenant_id=tenant,
        agent_name=agent_name,
        idempotency_key=key,
        status=QueueStatus.PENDING,
        retry_count=0,
        **body.model_dump(include=ITEM_FIELDS),
    )
    stored, created = await QueueRepository(services.store).enqueue(item)
    if not created:
        if not _same_request(stored, body, agent_name):
            raise Conflict(f"idempotency key {key!r} was used for a different enqueue ({stored.id})")
        response.status_code = 200  # a replay: the first request's item
    return QueueItemResponse(item=QueueItemPublic.of(stored))


@router.get("", response_model=QueueListResponse)
async def list_items(
    principal: PrincipalDep,
    services: ServicesDep,
    status: QueueStatus | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> QueueListResponse:
    items = await QueueRepository(services.store).list(principal.tenant_id, status, limit)
    return QueueListResponse(items=[QueueItemPublic.of(i) for i in items])


@router.get("/stats", response_model=QueueStatsResponse)
async def stats(principal: PrincipalDep, services: ServicesDep) -> QueueStatsResponse:
    counts = await QueueRepository(services.store).stats(principal.tenant_id)
    return QueueStatsResponse(stats=QueueStats(**{str(s): n for s, n in counts.items()}))


async def _item(services: ServicesDep, tenant_id: str, item_id: uuid.UUID) -> QueueItem:
    item = await QueueRepository(services.store).get(tenant_id, item_id)
    if item is None:
        raise NotFound(f"Queue item not found: no item {item_id}")
    return item


@router.get("/{item_id}", response_model=QueueItemResponse)
async def get_item(item_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> QueueItemResponse:
    return QueueItemResponse(item=QueueItemPublic.of(await _item(services, principal.tenant_id, item_id)))


@router.delete("/{item_id}", response_model=QueueItemResponse)
async def cancel_item(item_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> QueueItemResponse:
    """Only a pending item can be cancelled (400 otherwise, as the reference answers)."""
    item = await _item(services, principal.tenant_id, item_id)
    if item.status != QueueStatus.PENDING or not await QueueRepository(services.store).cancel(
        principal.tenant_id, item_id
    ):
        current = await _item(services, principal.tenant_id, item_id)
        raise Invalid(f'Cannot cancel item with status "{current.status}"', status=current.status)
    return QueueItemResponse(item=QueueItemPublic.of(await _item(services, principal.tenant_id, item_id)))
