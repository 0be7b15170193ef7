"""The pool in-process (fake bridge, real manager and store): the warm pool follows its policy and hands a sandbox
to a matching session; a full pool evicts the least recently used idle sandbox, whose session continues cold with
its memory."""

from __future__ import annotations

from ash_server.sandbox.warm import RecentAgents
from ash_server.states import SandboxState
from tests.support.core import core_services, deploy, new_session, turn


async def test_the_warm_pool_follows_its_policy_and_a_session_takes_one() -> None:
    async with core_services(warm_pool_size=1) as services:
        pool = services.pool
        await deploy(services)
        await services.warm.replenish()
        assert pool.counts()[SandboxState.WARM] == 1
        sid = await new_session(services)
        assert pool.pre_warm_hits == 1
        assert (await turn(services, sid, "hi")).answer == "echo: hi"
        services.warm.policy = RecentAgents(services.store, default=0, recent_s=3600, budget=10)
        await services.warm.replenish()
        assert pool.counts()[SandboxState.WARM] == 0  # what the policy no longer wants goes
        assert services.sessions.sandbox_of(sid) is not None  # the claimed one is a session's now


async def test_a_full_pool_evicts_the_least_recently_used_idle_sandbox() -> None:
    async with core_services(max_sandboxes=2, warm_pool_size=0) as services:
        await deploy(services)
        first, second = await new_session(services), await new_session(services)
        remembered = (await turn(services, first, "one")).session_id
        await turn(services, second, "two")  # `first` is now the least recently used
        stored = await services.sessions.get("default", first)
        third = await new_session(services)
        assert services.sessions.sandbox_of(first) is None
        assert services.sessions.sandbox_of(second) is not None and services.sessions.sandbox_of(third) is not None
        assert services.pool.evictions == 1
        # Its next message takes the cold path (the pool evicts `second` for it) and keeps the conversation.
        again = await turn(services, first, "back")
        assert again.session_id == remembered
        assert again.answer == f"echo: back (remembering {stored.sdk_session_id})"
