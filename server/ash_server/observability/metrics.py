"""Prometheus metrics of one server. A registry per app (no process-global state), scraped at /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..cluster.registry import RunnerView

# Latency buckets from 0.5 ms (Ash's own overhead) to 10 min (a long agent turn).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)


def latency(registry: CollectorRegistry, name: str, documentation: str, *labels: str) -> Histogram:
    """A latency histogram in seconds, on the buckets every Ash latency shares (so dashboards can compare them)."""
    return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS, registry=registry)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ash_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"], registry=r
        )
        self.request_seconds = latency(
            r,
            "ash_http_request_duration_seconds",
            "HTTP request latency (for streams: until the response starts).",
            "method",
            "route",
        )
        self.turn_seconds = latency(r, "ash_turn_duration_seconds", "Whole turn, message in to done.")
        self.turn_end_write_failures = Counter(
            "ash_turn_end_write_failures_total",
            "Failed attempts to store what a turn leaves (its SDK session id, its stream frames); each is retried.",
            ["what"],
            registry=r,
        )
        self.db_statements = Counter(
            "ash_db_statements_total", "SQL statements this server sent to its database.", registry=r
        )
        self.db_commits = Counter("ash_db_commits_total", "Transactions this server committed.", registry=r)
        self.first_event_seconds = latency(
            r, "ash_turn_first_event_seconds", "From the message to the bridge's first event of the turn."
        )
        self.session_create_seconds = latency(r, "ash_session_create_seconds", "Session creation.", "path")
        self.resume_seconds = latency(r, "ash_session_resume_seconds", "Session resume by path.", "path")
        self.sandbox_starts = Counter(
            "ash_sandbox_starts_total", "Sandboxes started (bridge ready), warm pool included.", registry=r
        )
        self.sandbox_starts_in_flight = Gauge(
            "ash_sandbox_starts_in_flight",
            "Sandbox starts running now (ASH_MAX_CONCURRENT_STARTS at most).",
            registry=r,
        )
        self.sandbox_start_queue = Gauge(
            "ash_sandbox_start_queue", "Sandbox starts waiting for their turn to start.", registry=r
        )
        self.sandbox_start_wait_seconds = latency(
            r, "ash_sandbox_start_wait_seconds", "How long a sandbox start waited for its turn."
        )
        self.sandbox_start_refusals = Counter(
            "ash_sandbox_start_refusals_total",
            "Session starts refused (503) after waiting ASH_START_QUEUE_TIMEOUT_MS for their turn.",
            registry=r,
        )
        self.sandbox_failures = Counter(
            "ash_sandbox_failures_total",
            "Sandboxes that failed to start or ended on their own, by cause: start, oom, pids, disk, crash.",
            ["cause"],
            registry=r,
        )
        self.tokens = Counter(
            "ash_gateway_tokens_total",
            "Model tokens relayed by the gateway, by kind (input, output, cache_creation, cache_read) and model.",
            ["kind", "model"],
            registry=r,
        )
        self.gateway_refusals = Counter(
            "ash_gateway_refusals_total",
            "Model calls the gateway refused, by reason: model, max_tokens, calls_per_minute, session_tokens, "
            "tenant_tokens.",
            ["reason"],
            registry=r,
        )
        self.open_streams = Gauge("ash_sse_open_streams", "Open SSE streams.", registry=r)

    def add_pool_collector(self, stats: Callable[[], dict[str, int]]) -> None:
        """Pool gauges read at scrape time from the pool's own counts, so they can never drift."""
        self.registry.register(_PoolCollector(stats))

    def add_runner_collector(self, runners: Callable[[], Sequence[RunnerView]]) -> None:
        """Coordinator mode: runner gauges, from what the registry last read of the database."""
        self.registry.register(_RunnerCollector(runners))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("ash_pool_sandboxes", "Sandboxes in the pool by state.", labels=["state"])
        for state, count in self._stats().items():
            family.add_metric([state], count)
        return [family]


class _RunnerCollector(Collector):
    def __init__(self, runners: Callable[[], Sequence[RunnerView]]) -> None:
        self._runners = runners

    def collect(self) -> list[GaugeMetricFamily]:
        now = time.time()
        by_status = GaugeMetricFamily("ash_runners", "Runners by status.", labels=["status"])
        load = GaugeMetricFamily(
            "ash_runner_load", "Sandboxes a runner holds, counting fresh placements.", labels=["runner"]
        )
        capacity = GaugeMetricFamily("ash_runner_capacity", "Sandboxes a runner may hold.", labels=["runner"])
        pool = GaugeMetricFamily("ash_runner_sandboxes", "A runner's sandboxes by state.", labels=["runner", "state"])
        age = GaugeMetricFamily(
            "ash_runner_heartbeat_age_seconds", "Time since a runner's last heartbeat.", labels=["runner"]
        )
        counts = dict.fromkeys(("live", "draining", "dead"), 0)
        for runner in self._runners():
            counts[runner.status] = counts.get(runner.status, 0) + 1
            load.add_metric([runner.id], runner.load)
            capacity.add_metric([runner.id], runner.max_sandboxes)
            age.add_metric([runner.id], max(0.0, now - runner.last_heartbeat_at.timestamp()))
            for state in ("warming", "warm", "waiting", "running", "cold"):
                if state in runner.stats:
                    pool.add_metric([runner.id, state], runner.stats[state])
        for status, n in counts.items():
            by_status.add_metric([status], n)
        return [by_status, load, capacity, pool, age]
