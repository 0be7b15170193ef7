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
        real_write = store.write_turn
        failures = {"left": 2}

        async def flaky_write(session: Any, messages: Any, frames: Any, **changes: Any) -> None:
            if "sdk_session_id" in changes and failures["left"]:
                failures["left"] -= 1
                raise OperationalError("UPDATE sessions", {}, Exception("database is locked"))
            await real_write(session, messages, frames, **changes)

        monkeypatch.setattr(store, "write_turn", flaky_write)
        with caplog.at_level(logging.WARNING):
            first = await turn(services, sid, "remember me")
        assert first.answer == "echo: remember me"
        assert failures["left"] == 0  # the error did happen, twice
        assert any("turn end" in r.getMessage().lower() for r in caplog.records)
        stored = await services.sessions.get("default", sid)
        assert stored.sdk_session_id and stored.sdk_session_id.startswith("fake-sdk-")
        # A cold resume: a new sandbox continues the conversation from the stored id.
        await services.sessions.stop("default", sid)
        await services.sessions.resume("default", sid)
        again = await turn(services, sid, "who am I")
        assert again.answer == f"echo: who am I (remembering {stored.sdk_session_id})"
        failed = services.sessions.metrics
        assert failed is not None
        assert failed.turn_end_write_failures.labels("turn_end")._value.get() == 2


async def test_when_the_turns_end_cannot_be_written_its_memory_still_is(monkeypatch: pytest.MonkeyPatch) -> None:
    async with core_services() as services:
        await deploy(services)
        sid = await new_session(services)
        store = services.store

        async def failing_write(session: Any, messages: Any, frames: Any, **changes: Any) -> None:
            if "sdk_session_id" in changes:  # the end's one transaction, every attempt
                raise OperationalError("INSERT INTO stream_events", {}, Exception("disk I/O error"))

        monkeypatch.setattr(store, "write_turn", failing_write)
        monkeypatch.setattr("ash_server.sessions.turns.WRITE_RETRY_S", 0.001)
        assert (await turn(services, sid, "remember me")).answer == "echo: remember me"
        stored = await services.sessions.get("default", sid)
        assert stored.sdk_session_id and stored.sdk_session_id.startswith("fake-sdk-")  # written alone
        failed = services.sessions.metrics
        assert failed.turn_end_write_failures.labels("turn_end")._value.get() == 4
        assert failed.turn_end_write_failures.labels("sdk_session_id")._value.get() == 0
