"""States have one typed home (ash_server/states.py): the session state machine's table, walked here, and the
service following it from create to end, in-process."""

from __future__ import annotations

import itertools

import pytest

from ash_server.errors import Gone
from ash_server.states import SESSION_TRANSITIONS, InvalidTransition, SessionStatus, check_transition
from tests.support.core import core_services, deploy, new_session, turn


def test_the_transition_table_covers_every_state_and_ended_is_final() -> None:
    assert set(SESSION_TRANSITIONS) == set(SessionStatus)
    assert SESSION_TRANSITIONS[SessionStatus.ENDED] == frozenset()
    for current, new in itertools.product(SessionStatus, repeat=2):
        if new in SESSION_TRANSITIONS[current]:
            check_transition(current, new)
        else:
            with pytest.raises(InvalidTransition):
                check_transition(current, new)
    # Every state but ended can end; only resumable ones come back to active from a stop.
    assert all(SessionStatus.ENDED in SESSION_TRANSITIONS[s] for s in SessionStatus if s != SessionStatus.ENDED)
    assert {s for s in SessionStatus if s.resumable} == {
        SessionStatus.PAUSED,
        SessionStatus.STOPPED,
        SessionStatus.ERROR,
    }


async def test_a_session_walks_the_machine_from_create_to_end() -> None:
    async with core_services() as services:
        await deploy(services)
        sessions = services.sessions
        sid = await new_session(services)

        async def status() -> SessionStatus:
            found = (await sessions.get("default", sid)).status
            assert isinstance(found, SessionStatus)  # read back as the enum, stored as its string
            return found

        assert await status() == SessionStatus.ACTIVE
        assert (await turn(services, sid, "one")).answer == "echo: one"
        await sessions.pause("default", sid)
        assert await status() == SessionStatus.PAUSED
        await sessions.resume("default", sid)
        assert await status() == SessionStatus.ACTIVE
        await sessions.stop("default", sid)
        assert await status() == SessionStatus.STOPPED
        await sessions.pause("default", sid)  # nothing to pause: it stays stopped
        assert await status() == SessionStatus.STOPPED
        await sessions.resume("default", sid)
        assert await status() == SessionStatus.ACTIVE
        await sessions.end("default", sid)
        assert await status() == SessionStatus.ENDED
        for step in (sessions.pause, sessions.resume, sessions.stop):
            with pytest.raises(Gone):
                await step("default", sid)
        assert (await sessions.end("default", sid)).status == SessionStatus.ENDED  # ending again changes nothing


def test_openapi_lists_the_states() -> None:
    from ash_server.app import create_app
    from ash_server.settings import Settings

    spec = create_app(Settings()).openapi()
    schemas = spec["components"]["schemas"]
    assert schemas["SessionStatus"]["enum"] == [s.value for s in SessionStatus]
    assert schemas["PermissionMode"]["enum"][-1] == "permissionsByAgent"
