"""routing.py on the message sequences Claude Code 2.1.330 sends (recorded from the real CLI against the fake model;
stream events and most fields left out). The real CLI's side is proven in test_background_turns.py."""

from __future__ import annotations

from typing import Any

from ash_bridge.routing import Destination, Query, Router

Message = dict[str, Any]
TURN, LAST, END = Destination.TURN, Destination.LAST, Destination.END
BACKGROUND, DROP = Destination.BACKGROUND, Destination.DROP


def lifecycle(uuid: str, state: str) -> Message:
    return {"type": "command_lifecycle", "command_uuid": uuid, "state": state}


def init(uuid: str | None = None) -> Message:
    return {"type": "system", "subtype": "init", **({"user_message_uuids": [uuid]} if uuid else {})}


def assistant(text: str, uuid: str | None = None) -> Message:
    named = {"user_message_uuid": uuid, "user_message_uuids": [uuid]} if uuid else {}
    return {"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}, **named}


def result(text: str, uuid: str | None = None) -> Message:
    if uuid is None:
        return {"type": "result", "result": text, "origin": {"kind": "task-notification"}}
    return {"type": "result", "result": text, "user_message_uuid": uuid, "user_message_uuids": [uuid]}


def system(subtype: str) -> Message:
    return {"type": "system", "subtype": subtype}


def tool_result() -> Message:
    return {"type": "user", "message": {"content": [{"type": "tool_result", "content": "running in background"}]}}


def routes(router: Router, query: Query | None, messages: list[Message]) -> list[Destination]:
    return [router.route(m, query) for m in messages]


def test_the_cli_s_own_turn_between_queries_is_background_and_lifecycles_are_dropped() -> None:
    router, first = Router(), Query("u1")
    assert routes(
        router,
        first,
        [
            lifecycle("u1", "queued"),
            lifecycle("u1", "started"),
            init("u1"),
            assistant("", "u1"),  # the Bash tool_use, run in the background
            system("task_started"),
            tool_result(),
            assistant("Started it."),
            result("Started it.", "u1"),
        ],
    ) == [DROP, DROP] + [TURN] * 5 + [LAST]
    # After the result, with no query waiting: the query's end, then the task's end and the CLI's own turn.
    assert (
        routes(
            router,
            None,
            [
                lifecycle("u1", "completed"),
                system("task_notification"),
                init(),
                assistant("The task finished."),
                result("The task finished."),
            ],
        )
        == [DROP] + [BACKGROUND] * 4
    )


def test_a_query_sent_while_the_cli_runs_its_own_turn_starts_after_it() -> None:
    router, query = Router(), Query("u2")
    router.attributed = True  # earlier queries on this connection were named
    assert routes(
        router,
        query,
        [
            lifecycle("u2", "queued"),
            assistant("The task finished."),
            result("The task finished."),  # the CLI's own turn ends: not this query's result
            lifecycle("u2", "started"),
            init("u2"),
            assistant("ECHO: alpha", "u2"),
            result("ECHO: alpha", "u2"),
        ],
    ) == [DROP, BACKGROUND, BACKGROUND, DROP, TURN, TURN, LAST]
    assert query.started


def test_a_task_that_ends_during_a_query_s_turn_is_part_of_it_and_its_own_turn_follows() -> None:
    router, query = Router(), Query("u3")
    assert routes(
        router,
        query,
        [
            lifecycle("u3", "queued"),
            lifecycle("u3", "started"),
            init("u3"),
            assistant("", "u3"),
            tool_result(),
            system("task_notification"),
            assistant("A long reply."),
            result("A long reply.", "u3"),
        ],
    ) == [DROP, DROP] + [TURN] * 5 + [LAST]
    assert routes(router, None, [lifecycle("u3", "completed"), init(), assistant("After."), result("After.")]) == [
        DROP,
        BACKGROUND,
        BACKGROUND,
        BACKGROUND,
    ]


def test_an_interrupted_query_ends_at_its_result_and_a_command_ended_without_one_ends_it_too() -> None:
    router, query = Router(), Query("u4")
    interrupted = {**result("", "u4"), "subtype": "error_during_execution", "terminal_reason": "aborted_streaming"}
    assert routes(router, query, [lifecycle("u4", "queued"), lifecycle("u4", "started"), interrupted]) == [
        DROP,
        DROP,
        LAST,
    ]
    assert router.route(lifecycle("u4", "cancelled"), None) is DROP
    # A command the CLI cancels while it is still queued: no result will come, its end ends the turn.
    cancelled = Query("u5")
    assert routes(router, cancelled, [lifecycle("u5", "queued"), lifecycle("u5", "cancelled")]) == [DROP, END]


def test_a_cli_that_names_no_query_ends_the_turn_at_the_first_result() -> None:
    router, query = Router(), Query("u6")
    assert routes(router, query, [init(), assistant("hi"), {"type": "result", "result": "hi"}]) == [TURN, TURN, LAST]
    assert router.route(assistant("on its own"), None) is BACKGROUND
