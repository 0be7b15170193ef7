"""`create_app(settings)`: builds the FastAPI app and everything it runs on. Nothing is created at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from opentelemetry.trace import TracerProvider

from . import __version__
from .api.deps import Services
from .api.errors import install_error_handlers
from .api.methods import install_method_handling
from .api.middleware.limits import RequestSizeLimit
from .api.middleware.network import install_network_middleware
from .api.middleware.requests import RequestIds, RequestMetrics
from .api.middleware.signed import SignedRequests, coordinator_protects, runner_protects
from .api.openapi import install_openapi
from .api.routes import (
    agent_versions,
    agents,
    analytics,
    api_keys,
    attachments,
    commands,
    coordinator,
    credentials,
    dashboard,
    docs,
    eval_cases,
    eval_runs,
    files,
    health,
    internal,
    metrics,
    queue,
    sessions,
    usage,
)
from .cluster.prompts import RunnerSessions
from .cluster.signing import RequestSigner
from .observability.metrics import Metrics
from .observability.tracing import build_tracer_provider, tracer_from
from .paths import DataDir
from .services import StartupError, build_services, check_supported
from .sessions.prompt import LocalSessions, PromptSessions
from .sessions.queue_worker import QueueWorker, WorkerOptions
from .settings import Settings
from .store.queue import QueueRepository

log = logging.getLogger(__name__)

__all__ = ["StartupError", "build_services", "check_supported", "create_app", "routers_for"]


def create_app(settings: Settings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """The app. Tracing: `tracer_provider` if given (tests pass one), else OTLP when OTEL_* asks for it."""
    provider = tracer_provider if tracer_provider is not None else build_tracer_provider()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            services = await build_services(settings, metrics=app.state.metrics, tracer=tracer_from(provider))
        except StartupError as exc:
            log.error("cannot start: %s", exc.message)  # one clear line before uvicorn's traceback
            raise
        app.state.services = services
        tasks = _background_tasks(services, app.state.metrics)
        log.info(
            "Ash %s (%s) listening on %s:%d (data: %s)",
            __version__,
            settings.mode,
            settings.host,
            settings.runner_port if settings.mode == "runner" else settings.port,
            settings.data_dir,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if services.runner_agent is not None:
                await services.runner_agent.drain()
            if services.evals is not None:
                await services.evals.shutdown()
            await services.sessions.shutdown()
            if services.runner_agent is not None:
                await services.runner_agent.deregister()
            if services.runner_client is not None:
                await services.runner_client.aclose()
            await services.gateway.aclose()
            await services.store.close()
            shutdown = getattr(provider, "shutdown", None)
            if tracer_provider is None and shutdown is not None:
                shutdown()  # flush spans still batched for export

    app = FastAPI(
        title="Ash",
        version=__version__,
        description="Deploy Claude-powered agents and talk to them over REST and SSE.",
        lifespan=lifespan,
        # Served by api/routes/docs.py, behind a key unless ASH_PUBLIC_DOCS.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    install_method_handling(app)
    install_openapi(app)
    app.state.metrics = Metrics()
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    if settings.mode != "standalone" and settings.internal_secret is not None:
        app.add_middleware(
            SignedRequests,
            signer=RequestSigner(settings.internal_secret.get_secret_value()),
            protects=runner_protects if settings.mode == "runner" else coordinator_protects,
            max_bytes=settings.max_request_bytes,
            internal_port=settings.internal_port if settings.mode == "coordinator" and settings.tls_enabled else None,
        )
    app.add_middleware(RequestIds)
    install_network_middleware(app, settings)  # last: the outermost layers
    for router in [*routers_for(settings.mode), docs.router]:
        app.include_router(router)
    return app


def routers_for(mode: str) -> list[APIRouter]:
    """What each mode serves: a coordinator has no sandboxes (sessions go to runners); a runner serves only the
    session API, to coordinators."""
    sessions_api = [sessions.router, files.router, commands.router]
    if mode == "runner":
        return [health.router, *sessions_api, metrics.router]
    account = [
        agents.router,
        agent_versions.router,
        credentials.router,
        api_keys.router,
        usage.router,
        eval_cases.router,
        analytics.router,
    ]
    if mode == "coordinator":
        # The queue and eval runs too: their sessions run on the runners (cluster/prompts.py).
        return [
            health.router,
            *account,
            eval_runs.router,
            queue.router,
            # Before coordinator's: its session routes are served here, from the database and the shared store.
            attachments.router,
            coordinator.router,
            internal.router,
            metrics.router,
        ]
    return [
        health.router,
        *account,
        eval_runs.router,
        *sessions_api,
        attachments.router,
        queue.router,
        internal.router,
        metrics.router,
        dashboard.router,
    ]


def _background_tasks(services: Services, metrics: Metrics) -> list[asyncio.Task[None]]:
    if services.registry is not None:
        metrics.add_runner_collector(services.registry.cached_runners)
        tasks = [asyncio.create_task(services.registry.run_sweeper())]
        if services.settings.queue_concurrency:
            tasks.append(asyncio.create_task(_queue_worker(services).run()))
        return tasks
    metrics.add_pool_collector(services.pool.counts)
    tasks = [
        asyncio.create_task(services.sessions.run_idle_sweeper()),
        asyncio.create_task(services.warm.maintain()),
    ]
    if services.runner_agent is not None:
        tasks.append(asyncio.create_task(services.runner_agent.run()))
    elif services.settings.queue_concurrency:
        tasks.append(asyncio.create_task(_queue_worker(services).run()))
    return tasks


def _queue_worker(services: Services) -> QueueWorker:
    settings = services.settings
    options = WorkerOptions(
        worker_id=DataDir(settings.data_dir).server_id(),
        concurrency=settings.queue_concurrency,
        poll_s=settings.queue_poll_ms / 1000,
        retry_delay_s=settings.queue_retry_delay_ms / 1000,
        lease_s=settings.queue_lease_ms / 1000,
    )
    if services.registry is not None and services.runner_client is not None:
        prompts: PromptSessions = RunnerSessions(services.store, services.registry, services.runner_client)
    else:
        prompts = LocalSessions(services.sessions)
    return QueueWorker(QueueRepository(services.store), prompts, options)
