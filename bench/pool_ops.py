"""Sandbox pool operations at 10,000 rows: what claim, release, evict, sweep and the pool's database writes cost.

    python -m bench.pool_ops [--quick] [--runs 500] [--postgres]

The real SandboxPool (sandbox/pool.py) and Store (store/repository.py) on a real database (SQLite in WAL mode, as
a server uses it; with --postgres also PostgreSQL, when tests/support/postgres.py finds one), holding 10,000 sandbox
rows and 10,000 live pool entries. Only the processes are left out: a stand-in manager starts and stops nothing, so
what is measured is the pool's own bookkeeping. Times are per operation, in microseconds.

- claim: take the warm sandbox of a profile (the scan a session create does over every entry);
- release: a session's sandbox goes cold (the call, then the row write it queues, flushed);
- evict: reserve() on a full pool: pick the least recently used idle sandbox, evict it, hand out the slot;
- sweep: the idle sweep's scan over every entry (nothing idle, and 1% idle);
- mark / counts / has_warm: a turn's state change, the /metrics gauges, the warm-pool check of a create;
- the rows: insert, update, delete, count by state, list a server's rows.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ash_server.paths import DataDir
from ash_server.sandbox.admission import StartAdmission
from ash_server.sandbox.pool import PoolEntry, SandboxPool
from ash_server.states import SandboxState
from ash_server.store.database import create_engine, migrate
from ash_server.store.models import SandboxRow, utcnow
from ash_server.store.repository import Store
from bench.common import arguments, machine, print_table, summary, write_result

ROWS = 10_000
SERVER = "bench-server"
PROFILE = "profile-bench"


class StandInSandbox:
    """What the pool reads of a sandbox; no process behind it."""

    def __init__(self, session_id: str) -> None:
        self.id = "sbx-" + uuid.uuid4().hex[:16]
        self.session_id = session_id
        self.alive = True


class StandInManager:
    """The manager's surface the pool uses, doing nothing: only the pool's bookkeeping is measured."""

    on_exited: Any = None

    class _Gateway:
        def assign(self, sandbox_id: str, session_id: str) -> None:
            return None

    gateway = _Gateway()

    async def stop(self, sandbox: Any) -> None:
        return None


async def timed(operation: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    """Microseconds per call."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        await operation()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def timed_sync(operation: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        operation()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def row(sandbox_id: str, state: SandboxState, session_id: uuid.UUID | None = None) -> SandboxRow:
    now = utcnow()
    return SandboxRow(
        id=sandbox_id,
        tenant_id="default",
        session_id=session_id or uuid.uuid4(),
        state=state,
        pid=None,
        created_at=now,
        last_used_at=now,
        server_id=SERVER,
    )


async def fill(store: Store, pool: SandboxPool) -> list[PoolEntry]:
    """10,000 rows and 10,000 live entries (90% waiting, 10% cold rows), LRU times spread out."""
    entries = []
    async with store.db() as db, db.begin():
        for n in range(ROWS):
            sandbox = StandInSandbox(str(uuid.uuid4()))
            state = SandboxState.COLD if n % 10 == 0 else SandboxState.WAITING
            db.add(row(sandbox.id, state, uuid.UUID(sandbox.session_id)))
            if state != SandboxState.COLD:
                entry = PoolEntry(sandbox, "default", sandbox.session_id, state=state, recorded=state)
                entry.last_used = time.monotonic() - ROWS + n
                pool._entries[sandbox.id] = entry
                entries.append(entry)
    return entries


async def measure(url: str, runs: int) -> dict[str, Any]:
    await migrate(url)
    store = Store(create_engine(url))
    data = Path(tempfile.mkdtemp(prefix="ash-bench-pool-"))
    pool = SandboxPool(
        store,
        StandInManager(),  # type: ignore[arg-type]
        DataDir(data),
        server_id=SERVER,
        max_sandboxes=ROWS * 2,
        admission=StartAdmission(1, queue_timeout_s=60),
    )
    results: dict[str, list[float]] = {}
    try:
        entries = await fill(store, pool)
        # claim: the oldest warm sandbox of a profile, among 10,000 entries (100 of them warm, 10 of this profile).
        for n, entry in enumerate(entries[:100]):
            entry.state = entry.recorded = SandboxState.WARM
            entry.profile = PROFILE if n % 10 == 0 else f"other-{n}"

        def claim() -> None:
            claimed = pool.claim(PROFILE)
            assert claimed is not None
            claimed.state, claimed.profile, claimed.claiming = SandboxState.WARM, PROFILE, False

        results["claim (10k entries)"] = timed_sync(claim, runs)
        results["has_warm (10k entries)"] = timed_sync(lambda: pool.has_warm("default", "nobody"), runs)
        turn = entries[500]

        def mark() -> None:
            running = turn.state == SandboxState.WAITING
            pool.mark(turn.id, SandboxState.RUNNING if running else SandboxState.WAITING)

        results["mark running/waiting"] = timed_sync(mark, runs)
        results["counts (metrics gauges)"] = timed_sync(pool.counts, runs)
        for entry in entries[:100]:
            entry.state = entry.recorded = SandboxState.WAITING
            entry.profile = None

        # sweep: nothing idle (the scan alone), then 1% idle, each evicted by a stand-in evictor.
        async def evict(entry: PoolEntry, reason: str) -> bool:
            await pool.release(entry.sandbox, cold=True)
            return True

        results["sweep scan, nothing idle"] = await timed(lambda: pool.sweep_idle(10**9, evict), runs)
        sweeps = []
        for _ in range(max(3, runs // 50)):
            now = time.monotonic()
            live = pool.entries()
            for entry in live[: ROWS // 100]:
                entry.last_used = now - 3600
            started = time.perf_counter_ns()
            swept = await pool.sweep_idle(1800, evict)
            sweeps.append((time.perf_counter_ns() - started) / 1000 / max(1, swept))
            await pool.flush()
            refill(pool, swept)
        results["sweep, per evicted sandbox (1% idle)"] = sweeps

        # release: the call (the row write is queued), then the write itself.
        victims = pool.entries()[:runs]
        calls = []
        started_all = time.perf_counter_ns()
        for entry in victims:
            started = time.perf_counter_ns()
            await pool.release(entry.sandbox, cold=True)
            calls.append((time.perf_counter_ns() - started) / 1000)
        await pool.flush()
        results["release (call)"] = calls
        results["release (call + its row write, amortised)"] = [
            (time.perf_counter_ns() - started_all) / 1000 / len(victims)
        ]
        refill(pool, len(victims))

        # evict: reserve() on a full pool evicts the least recently used idle sandbox.
        pool.max_sandboxes = len(pool.entries())
        evictions = []
        for _ in range(runs):
            started = time.perf_counter_ns()
            slot = await pool.reserve(evict)
            evictions.append((time.perf_counter_ns() - started) / 1000)
            slot.release()
            refill(pool, 1)
        await pool.flush()
        results["evict (reserve on a full pool)"] = evictions

        # The rows themselves, at 10,000.
        ids = [f"sbx-bench-{n}" for n in range(runs)]
        results["row insert"] = [await one(lambda i=i: store.save_sandbox(row(i, SandboxState.WARMING))) for i in ids]  # type: ignore[misc]
        results["row update (state)"] = [
            await one(lambda i=i: store.update_sandbox(i, state=SandboxState.WAITING)) for i in ids
        ]  # type: ignore[misc]
        results["row count by state"] = await timed(lambda: store.count_sandboxes(SERVER, "cold"), runs)
        results["row delete"] = [await one(lambda i=i: store.delete_sandbox(i)) for i in ids]  # type: ignore[misc]
        results["list a server's rows (10k, start-up)"] = await timed(
            lambda: store.list_sandboxes(SERVER), max(3, runs // 50)
        )
    finally:
        await store.close()
        shutil.rmtree(data, ignore_errors=True)
    return {name: summary(values, 1) for name, values in results.items()}


async def one(operation: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter_ns()
    await operation()
    return (time.perf_counter_ns() - started) / 1000


def refill(pool: SandboxPool, count: int) -> None:
    """Put `count` new waiting entries back, so the pool stays at 10,000."""
    for _ in range(count):
        sandbox = StandInSandbox(str(uuid.uuid4()))
        entry = PoolEntry(sandbox, "default", sandbox.session_id, state="waiting", recorded="waiting")  # type: ignore[arg-type]
        pool._entries[sandbox.id] = entry


def run(quick: bool, runs: int | None = None, postgres: bool = False) -> dict[str, Any]:
    runs = runs or (50 if quick else 500)
    folder = Path(tempfile.mkdtemp(prefix="ash-bench-db-"))
    results: dict[str, Any] = {"machine": machine(), "rows": ROWS, "runs": runs, "unit": "µs"}
    try:
        results["sqlite"] = asyncio.run(measure(f"sqlite+aiosqlite:///{folder / 'ash.db'}", runs))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if postgres:
        from tests.support.postgres import PostgresCluster, Unavailable, asyncpg_url

        try:
            cluster = PostgresCluster.start_new()
        except Unavailable as exc:
            results["postgresql"] = {"skipped": str(exc)}
        else:
            try:
                results["postgresql"] = asyncio.run(measure(asyncpg_url(cluster.database()), runs))
            finally:
                cluster.stop()
    return results


def main() -> None:
    args = arguments(__doc__.splitlines()[0], 500, {"--postgres": "also on PostgreSQL (tests/support/postgres.py)"})
    result = run(args.quick, args.runs, postgres=args.postgres)
    for backend in ("sqlite", "postgresql"):
        if isinstance(result.get(backend), dict) and "skipped" not in result[backend]:
            print_table(f"Pool operations at {ROWS:,} rows ({backend})", list(result[backend].items()), unit="µs")
    print("wrote", write_result("pool_ops", result, quick=args.quick))


if __name__ == "__main__":
    main()
