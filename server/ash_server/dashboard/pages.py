"""The dashboard's pages: overview, agents, sessions and a session followed live, each scoped to the viewer's
tenant (the router, sign-in and headers are in dashboard/signin.py)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .. import __version__
from ..api.deps import Services, ServicesDep
from ..api.routes.sessions import event_stream
from ..api.schemas import UsageStats
from ..api.sse import EventStream
from ..errors import Invalid, NotFound
from ..states import SandboxState
from ..store.models import SessionRow
from .render import duration, render
from .signin import EVENT_PAGE, MESSAGE_PAGE, SESSION_PAGE, PageViewer, ScriptViewer, Viewer, router
from .views import STATUSES, RunnerRow, SessionCounts, conversation, timeline

__all__ = ["router"]

# -- Pages ------------------------------------------------------------------------------------------------------


def _page(viewer: Viewer, template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, viewer=viewer, **context))


async def runner_rows(services: Services) -> list[RunnerRow]:
    """The servers that run this deployment's sandboxes, one row each.

    Standalone: this server alone. This is the hook for coordinator mode: there it returns one row per runner of the
    registry (`Store.list_runners()`: id, url, status, sandboxes and capacity from the heartbeats).
    """
    settings = services.settings
    stats = await services.pool.stats()
    isolation = f"{services.sandboxes.isolation} isolation, limits by {services.sandboxes.limits_mechanism}"
    return [
        RunnerRow(
            id=services.pool.server_id,
            role=f"{settings.mode} (this server)",
            address=f"{settings.host}:{settings.port}",
            status="live",
            sandboxes=stats["total"],
            capacity=stats["maxCapacity"],
            running=stats["running"],
            detail=f"Ash {__version__}, {isolation}, up {duration(time.monotonic() - services.started_at)}",
        )
    ]


def _sandbox_states(services: Services) -> dict[str, str]:
    """Session id → the state of its sandbox on this server (warming, warm, waiting, running)."""
    return {entry.session_id: entry.state for entry in services.pool.entries()}


def _turn_running(services: Services, session: SessionRow) -> bool:
    return _sandbox_states(services).get(str(session.id)) == SandboxState.RUNNING


async def _agents(services: Services, tenant: str) -> dict[str, Any]:
    """The tenant's agents and their session counts (the overview and the agents page show both)."""
    return {
        "agents": await services.agents.list(tenant),
        "counts": SessionCounts.of(await services.sessions.history.counts(tenant)),
    }


@router.get("")
async def overview(viewer: PageViewer, services: ServicesDep) -> HTMLResponse:
    tenant = viewer.principal.tenant_id
    return _page(
        viewer,
        "overview.html",
        nav="overview",
        **await _agents(services, tenant),
        sessions=await services.sessions.list_sessions(tenant, agent=None, status=None, limit=10, offset=0),
        sandbox_states=_sandbox_states(services),
        pool=await services.pool.stats(),
        runners=await runner_rows(services),
        usage=UsageStats.of(await services.sessions.history.usage(tenant)),
    )


@router.get("/agents")
async def agents_page(viewer: PageViewer, services: ServicesDep) -> HTMLResponse:
    tenant = viewer.principal.tenant_id
    return _page(viewer, "agents.html", nav="agents", **await _agents(services, tenant))


@router.get("/sessions")
async def sessions_page(
    viewer: PageViewer,
    services: ServicesDep,
    status: Annotated[str, Query(max_length=16)] = "",
    agent: Annotated[str, Query(max_length=255)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    if status and status not in STATUSES:
        raise Invalid(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
    tenant = viewer.principal.tenant_id
    rows = await services.sessions.list_sessions(
        tenant, agent=agent or None, status=status or None, limit=SESSION_PAGE + 1, offset=offset
    )
    return _page(
        viewer,
        "sessions.html",
        nav="sessions",
        sessions=rows[:SESSION_PAGE],
        has_more=len(rows) > SESSION_PAGE,
        offset=offset,
        page_size=SESSION_PAGE,
        status=status,
        agent=agent,
        statuses=STATUSES,
        agents=await services.agents.list(tenant),
        sandbox_states=_sandbox_states(services),
    )


@router.get("/sessions/{session_id}")
async def session_page(
    session_id: uuid.UUID,
    viewer: PageViewer,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0, le=2**31)] = None,
) -> HTMLResponse:
    """The conversation (the latest MESSAGE_PAGE messages, or those after `after`) and timeline, followed live."""
    tenant, history = viewer.principal.tenant_id, services.sessions.history
    session = await services.sessions.get(tenant, session_id)
    start = after if after is not None else max(0, session.last_message_seq - MESSAGE_PAGE)
    messages = await history.messages(tenant, session_id, after=start, limit=MESSAGE_PAGE)
    last_message = messages[-1].sequence if messages else start
    event_start = max(0, session.last_event_seq - EVENT_PAGE)
    events = await history.events(tenant, session_id, after=event_start, limit=EVENT_PAGE)
    return _page(
        viewer,
        "session.html",
        nav="sessions",
        session=session,
        messages=conversation(messages),
        events=timeline(events),
        first_message=start,
        last_message=last_message,
        last_event=events[-1].sequence if events else event_start,
        earlier_events=event_start,
        page_size=MESSAGE_PAGE,
        # Live only on the latest page: older pages stay as they are.
        live=len(messages) < MESSAGE_PAGE or last_message >= session.last_message_seq,
        sandbox_state=_sandbox_states(services).get(str(session.id)),
        usage=UsageStats.of(await history.usage(tenant, session_id)),
    )


@router.get("/sessions/{session_id}/updates")
async def session_updates(
    session_id: uuid.UUID,
    viewer: ScriptViewer,
    services: ServicesDep,
    messages: Annotated[int, Query(ge=0, le=2**31)] = 0,
    events: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> JSONResponse:
    """What a session page has not shown yet, rendered: messages after `messages`, events after `events`."""
    tenant, history = viewer.principal.tenant_id, services.sessions.history
    session = await services.sessions.get(tenant, session_id)
    new_messages = await history.messages(tenant, session_id, after=messages, limit=MESSAGE_PAGE)
    new_events = await history.events(tenant, session_id, after=events, limit=EVENT_PAGE)
    # Usage is recorded as timeline `usage` events are: new events, new totals.
    usage = UsageStats.of(await history.usage(tenant, session_id)) if new_events else None
    return JSONResponse(
        {
            "messages": render("_messages.html", messages=conversation(new_messages)) if new_messages else "",
            "events": render("_events.html", events=timeline(new_events)) if new_events else "",
            "lastMessage": new_messages[-1].sequence if new_messages else messages,
            "lastEvent": new_events[-1].sequence if new_events else events,
            "more": len(new_messages) == MESSAGE_PAGE or len(new_events) == EVENT_PAGE,
            "usage": render("_usage.html", usage=usage) if usage is not None else "",
            "status": session.status,
        }
    )


@router.get("/sessions/{session_id}/stream", response_class=EventStream)
async def session_stream(
    session_id: uuid.UUID,
    viewer: ScriptViewer,
    services: ServicesDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
) -> EventStream:
    """The session's frames from now on, partial text included, across turns (EventSource reconnects resume after
    `Last-Event-ID`). Opened while a turn runs, it starts at that turn's first frame, so its text so far shows."""
    tenant = viewer.principal.tenant_id
    session = await services.sessions.get(tenant, session_id)
    after = last_event_id
    if after is None and not _turn_running(services, session):
        after = await services.sessions.history.last_frame(session.id)
    subscription = await services.sessions.subscribe(tenant, session_id, after=after, include_partial=True, follow=True)
    return event_stream(services, subscription)


@router.get("/{path:path}")
async def not_found(path: str, viewer: PageViewer) -> Response:
    if not path:
        return RedirectResponse("/dashboard", status_code=307)
    raise NotFound(f"no dashboard page /dashboard/{path}")
