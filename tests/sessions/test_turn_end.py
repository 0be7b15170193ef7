"""The end of a turn writes the SDK session id (the session's memory on a cold resume) and the last stream frames;
a database error there is retried, logged and counted, never silently swallowed."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from tests.support.core import core_services, deploy, new_session, turn


async def test_a_database_error_at_the_end_of_a_turn_costs_no_memory(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with core_services() as services:
        await deploy(services)
        sid = await new_session(services)
        store = services.store
        real_update = store.update_session
        failures = {"left": 2}

        async def flaky_update(session_id: Any, **values: Any) -> None:
            if "sdk_session_id" in values and failures["left"]:
                failures["left"] -= 1
                raise OperationalError("UPDATE sessions", {}, Exception("database is locked"))
            await real_update(session_id, **values)

        monkeypatch.setattr(store, "update_session", flaky_update)
        with caplog.at_level(logging.WARNING):
            first = await turn(services, sid, "remember me")
        assert first.answer == "echo: remember me"
        assert failures["left"] == 0  # the error did happen, twice
        assert any("sdk session id" in r.getMessage().lower() for r in caplog.records)
        stored = await services.sessions.get("default", sid)
        assert stored.sdk_session_id and stored.sdk_session_id.startswith("fake-sdk-")
        # A cold resume: a new sandbox continues the conversation from the stored id.
        await services.sessions.stop("default", sid)
        await services.sessions.resume("default", sid)
        again = await turn(services, sid, "who am I")
        assert again.answer == f"echo: who am I (remembering {stored.sdk_session_id})"
        failed = services.sessions.metrics
        assert failed is not None
        assert failed.turn_end_write_failures.labels("sdk_session_id")._value.get() == 2
