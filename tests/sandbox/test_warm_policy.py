"""The default warm pool policy: one warm sandbox per recently used agent, an agent's own `warmPoolSize` first,
all within the memory budget, the most recently used agents served first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ash_server.sandbox.warm import WARM_SANDBOX_MIB, RecentAgents, warm_budget
from ash_server.store.models import Agent

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HOUR = 3600.0


class Usage:
    """The store's `agents_used_since`, in memory: (tenant, agent) → newest session."""

    def __init__(self, used: dict[tuple[str, str], datetime]) -> None:
        self.used = used
        self.asked: list[datetime] = []

    async def agents_used_since(self, since: datetime) -> dict[tuple[str, str], datetime]:
        self.asked.append(since)
        return {key: at for key, at in self.used.items() if at >= since}


def agent(name: str, deployed_hours_ago: float, **config: object) -> Agent:
    at = NOW - timedelta(hours=deployed_hours_ago)
    return Agent(tenant_id="default", name=name, path="/x", config=dict(config), created_at=at, updated_at=at)


def policy(usage: Usage, *, default: int = 1, recent_s: float = 24 * HOUR, budget: int = 12) -> RecentAgents:
    return RecentAgents(usage, default=default, recent_s=recent_s, budget=budget, clock=lambda: NOW)


def names(chosen: list[tuple[Agent, int]]) -> list[tuple[str, int]]:
    return [(a.name, n) for a, n in chosen]


async def test_agents_deployed_or_used_recently_get_one_the_most_recent_first() -> None:
    usage = Usage({("default", "old-but-used"): NOW - timedelta(minutes=5)})
    agents = [agent("fresh", 1), agent("stale", 48), agent("old-but-used", 100), agent("yesterday", 20)]
    chosen = await policy(usage).wanted(agents)
    assert names(chosen) == [("old-but-used", 1), ("fresh", 1), ("yesterday", 1)]
    assert usage.asked == [NOW - timedelta(hours=24)]


async def test_an_agents_own_size_comes_first_recent_or_not_and_zero_turns_it_off() -> None:
    agents = [agent("fresh", 1), agent("own", 500, warmPoolSize=2), agent("off", 1, warmPoolSize=0)]
    assert names(await policy(Usage({})).wanted(agents)) == [("own", 2), ("fresh", 1)]


async def test_the_budget_caps_the_total_and_cuts_the_least_recent() -> None:
    agents = [agent(f"a{i}", i) for i in range(6)] + [agent("own", 10, warmPoolSize=3)]
    assert names(await policy(Usage({}), budget=4).wanted(agents)) == [("own", 3), ("a0", 1)]
    assert names(await policy(Usage({}), budget=2).wanted(agents)) == [("own", 2)]


async def test_a_default_of_zero_keeps_only_own_sizes_and_asks_nothing() -> None:
    usage = Usage({})
    agents = [agent("fresh", 0.1), agent("own", 1, warmPoolSize=1)]
    assert names(await policy(usage, default=0).wanted(agents)) == [("own", 1)]
    assert usage.asked == []


def test_the_budget_is_the_memory_over_a_warm_sandboxs_size() -> None:
    assert warm_budget(3 * 1024) == 3 * 1024 // WARM_SANDBOX_MIB == 12
    assert warm_budget(100) == 0
    assert warm_budget(0) >= 1  # an eighth of this machine's memory holds at least one
