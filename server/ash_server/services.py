"""The services of a server, built from its settings and checked at start: the store, sandboxes, pool, sessions,
gateway, snapshots and the rest, wired through their constructors (app.py serves them)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from opentelemetry.trace import Tracer

from .agent_versions import AgentVersions
from .agents import AgentService
from .api.deps import Services
from .attachments import AttachmentService
from .auth import Authenticator, load_secret
from .cluster import tls
from .cluster.load import CreateLoad
from .cluster.prompts import RunnerSessions
from .cluster.proxy import RunnerClient
from .cluster.registry import Registry
from .cluster.runner import RunnerAgent
from .cluster.signing import RequestSigner
from .credentials import CredentialService
from .errors import AshError, SnapshotError
from .evals.runner import EvalRunner
from .gateway import Gateway
from .observability.metrics import Metrics
from .paths import DataDir
from .ratelimit import RateLimiter, RateLimits
from .sandbox.admission import StartAdmission
from .sandbox.builds import ManagedBuilds
from .sandbox.dependencies import DependencyBuilder
from .sandbox.isolation import IsolationUnavailable, runtime_paths, select_runtimes
from .sandbox.launcher import ProcessLauncher
from .sandbox.limits import detect_backend
from .sandbox.manager import SandboxManager, sandbox_runtime_readable
from .sandbox.pool import SandboxPool
from .sandbox.runtimes import Runtimes
from .sandbox.warm import RecentAgents, WarmPool, warm_budget
from .sessions.core import SessionCore
from .sessions.prompt import LocalSessions, PromptSessions
from .sessions.service import SessionService
from .sessions.turn_usage import TurnUsage
from .settings import Settings
from .snapshots import SnapshotStore, open_store
from .snapshots.local import LocalSnapshotStore
from .snapshots.service import SnapshotService
from .store.agent_versions import AgentVersionStore
from .store.attachments import AttachmentStore
from .store.database import (
    DatabaseUnavailable,
    PoolOptions,
    count_statements,
    create_engine,
    migrate,
    wait_for_database,
)
from .store.evals import EvalStore
from .store.repository import Store

log = logging.getLogger(__name__)


class StartupError(AshError):
    """The server cannot start with this configuration; the message says what to change."""


def check_supported(settings: Settings) -> None:
    if settings.mode in ("coordinator", "runner"):
        if settings.internal_secret is None:
            raise StartupError(
                f"ASH_MODE={settings.mode} needs ASH_INTERNAL_SECRET (the same 32+ random characters on every "
                "coordinator and runner; it signs their requests to each other)"
            )
        if not settings.effective_database_url.startswith("postgresql"):
            raise StartupError(
                f"ASH_MODE={settings.mode} needs a PostgreSQL database that every coordinator and runner shares "
                "(ASH_DATABASE_URL=postgresql://...)"
            )
    if settings.mode == "runner" and not settings.server_url:
        raise StartupError("ASH_MODE=runner needs ASH_SERVER_URL: the coordinator it registers with")
    problem = tls.check(settings)
    if problem:
        raise StartupError(problem)
    if settings.mode == "coordinator":
        return  # sandboxes run on the runners
    problem = sandbox_runtime_readable(settings.sandbox_ids, [*runtime_paths(), settings.data_dir])
    if problem:
        raise StartupError(
            f"sandboxes cannot run the bridge: {problem}. Install Ash where the sandbox user can read it "
            "(for example /opt/ash), or set ASH_SANDBOX_UID"
        )


def _private_sqlite_file(settings: Settings) -> None:
    """SQLite creates its files world-readable under the usual umask; the database holds key hashes."""
    if settings.database_url:
        return
    db = settings.data_dir / "ash.db"
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    for path in (db, db.with_name("ash.db-wal"), db.with_name("ash.db-shm")):
        if path.exists():
            os.chmod(path, 0o600)


async def _snapshot_store(settings: Settings) -> SnapshotStore | None:
    """The store ASH_SNAPSHOT_URL names, checked now: a server that cannot snapshot says why at start."""
    if not settings.snapshot_url:
        return None
    try:
        backend = open_store(settings.snapshot_url, s3_endpoint_url=settings.s3_endpoint_url)
        await backend.check()
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    except SnapshotError as exc:
        raise StartupError(f"ASH_SNAPSHOT_URL: {exc.message}") from exc
    log.info("snapshots: %s", backend.url)
    return backend


async def build_services(
    settings: Settings, *, metrics: Metrics | None = None, tracer: Tracer | None = None
) -> Services:
    check_supported(settings)
    data = DataDir(settings.data_dir)
    data.prepare()
    _private_sqlite_file(settings)
    url = settings.effective_database_url
    try:
        await wait_for_database(url, timeout_s=settings.database_startup_timeout_ms / 1000)
    except DatabaseUnavailable as exc:
        raise StartupError(exc.message) from exc
    applied = await migrate(url)  # under a lock: servers starting together migrate once
    if applied:
        log.info("database schema migrated to %s", applied[-1])
    pool = PoolOptions(
        size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        timeout_s=settings.database_pool_timeout_ms / 1000,
    )
    store = Store(create_engine(url, pool))
    metrics = metrics or Metrics()
    count_statements(store.sync_engines(), metrics.db_statements.inc, metrics.db_commits.inc)
    auth = Authenticator(
        store, load_secret(settings), failures=RateLimiter(settings.rate_limit_auth_failures_per_minute)
    )
    if settings.mode != "runner":  # runners take no API keys: coordinators authenticate
        await auth.bootstrap(settings)
    credential_service = CredentialService.from_settings(store, settings)
    turn_usage = TurnUsage(store)
    gateway = Gateway(settings, store, credential_service, metrics=metrics, usage=turn_usage)
    limits = detect_backend(settings.data_dir, (settings.sandbox_ids or (os.getuid(), os.getgid()))[0])
    try:
        # A coordinator starts no sandbox: it needs no isolation (its runners check theirs).
        runtimes = (
            Runtimes(ProcessLauncher())
            if settings.mode == "coordinator"
            else await select_runtimes(settings, limits.name)
        )
    except IsolationUnavailable as exc:
        raise StartupError(exc.message) from exc
    log.info("sandboxes: isolation %s, limits by %s", runtimes.default.name, limits.name)
    sandboxes = SandboxManager(settings, data, runtimes, gateway=gateway, limits=limits)
    # A runner is known by its runner id (the `runnerId` of its sessions); other servers by their data dir's id.
    server_id = settings.effective_runner_id if settings.mode == "runner" else data.server_id()
    sandbox_pool = SandboxPool(
        store,
        sandboxes,
        data,
        server_id=server_id,
        max_sandboxes=(settings.runner_max_sandboxes or settings.max_sandboxes)
        if settings.mode == "runner"
        else settings.max_sandboxes,
        admission=StartAdmission(
            settings.max_concurrent_starts or os.cpu_count() or 1,
            queue_timeout_s=settings.start_queue_timeout_ms / 1000,
            metrics=metrics,
        ),
        metrics=metrics,
    )
    snapshot_backend = await _snapshot_store(settings)
    snapshots = SnapshotService(store, snapshot_backend, data, server_id=server_id, owner=settings.sandbox_ids)
    attachment_service = AttachmentService(
        AttachmentStore(store),
        # Beside the snapshots; without a snapshot store, in the data dir (its own folder, private), which only a
        # standalone server can use: a coordinator's and its runners' data dirs are on different machines.
        snapshot_backend or (LocalSnapshotStore(data.root / "attachments") if settings.mode == "standalone" else None),
        max_bytes=settings.max_attachment_bytes,
        scratch=data.root,
    )
    agent_service = AgentService(
        store,
        data,
        versions=AgentVersionStore(store),
        path_roots=settings.agent_root_paths,
        max_upload_bytes=settings.max_upload_bytes,
        max_files=settings.max_agent_files,
        path_tenants=settings.path_deploy_tenant_ids,
        network_ceilings=gateway.network_ceilings,
        # A coordinator starts no sandbox: its runners build what their sessions' agents need.
        dependencies=None
        if settings.mode == "coordinator"
        else DependencyBuilder(
            ManagedBuilds(sandboxes),
            data.root / "dependencies",
            registries=[r.strip() for r in settings.dependency_registries.split(",") if r.strip()],
            timeout_s=settings.dependency_build_timeout_s,
        ),
    )
    # A runner reports the creates it received as load (cluster/load.py).
    creates = CreateLoad() if settings.mode == "runner" else None
    session_core = SessionCore(
        store,
        data,
        agent_service,
        sandboxes,
        pool=sandbox_pool,
        snapshots=snapshots,
        metrics=metrics,
        tracer=tracer,
        exclusive=settings.mode == "runner",
        usage=turn_usage,
    )
    session_service = SessionService(
        session_core,
        hot_window_s=settings.hot_window_ms / 1000,
        retention_s=settings.session_retention_ms / 1000,
        debug_timing=settings.debug_timing,
        creates=creates,
    )
    if settings.mode != "coordinator":
        recovered = await session_service.recover()
        if recovered:
            log.info("paused %d session(s) that were live when the server last stopped", recovered)
    signer = RequestSigner(settings.internal_secret.get_secret_value()) if settings.internal_secret else None
    cluster: dict[str, Any] = {}
    prompts: PromptSessions | None = LocalSessions(session_service) if settings.mode == "standalone" else None
    if settings.mode == "coordinator":
        assert signer is not None
        registry, runner_client = Registry(store, settings), RunnerClient(settings, signer)
        cluster = {"registry": registry, "runner_client": runner_client}
        prompts = RunnerSessions(store, registry, runner_client)
    elif settings.mode == "runner":
        assert signer is not None and creates is not None
        runner_agent = RunnerAgent(settings, signer, session_service, sandbox_pool, gateway, creates)
        cluster = {"runner_agent": runner_agent}
    eval_runner = EvalRunner(EvalStore(store), prompts, server_id=server_id) if prompts is not None else None
    if eval_runner is not None and await eval_runner.recover():
        log.info("failed the eval runs that were running when the server last stopped")
    return Services(
        settings=settings,
        store=store,
        auth=auth,
        agents=agent_service,
        agent_versions=AgentVersions(
            agent_service,
            agent_service.versions,
            max_upload_bytes=settings.max_upload_bytes,
            max_files=settings.max_agent_files,
        ),
        sessions=session_service,
        sandboxes=sandboxes,
        pool=sandbox_pool,
        warm=WarmPool(
            sandbox_pool,
            RecentAgents(
                store,
                default=settings.warm_pool_size,
                recent_s=settings.warm_pool_recent_ms / 1000,
                budget=warm_budget(settings.warm_pool_memory_mb),
            ),
            prepare=session_service.prepare_warm,
        ),
        snapshots=snapshots,
        started_at=time.monotonic(),
        credentials=credential_service,
        gateway=gateway,
        evals=eval_runner,
        attachments=attachment_service,
        # On a runner the coordinators have applied the limits already.
        rate_limits=RateLimits.unlimited()
        if settings.mode == "runner"
        else RateLimits(
            sessions=RateLimiter(settings.rate_limit_sessions_per_minute),
            messages=RateLimiter(settings.rate_limit_messages_per_minute),
        ),
        **cluster,
    )
