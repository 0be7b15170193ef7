"""Run the server in the foreground with uvicorn (what `ash serve`, `ash runner`, systemd and Docker run)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import uvicorn
import uvloop

from .api.http_limits import HeaderLimits, bounded_protocol
from .app import create_app
from .cluster import tls
from .observability.logs import configure_logging
from .settings import Settings


def serve(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    secrets = [
        s.get_secret_value()
        for s in (settings.anthropic_api_key, settings.api_key, settings.internal_secret)
        if s is not None
    ]
    configure_logging(settings.log_level, settings.log_format, secrets)
    # Files the server creates are private unless it opens them up on purpose (DataDir.prepare does).
    os.umask(0o077)
    app = create_app(settings)
    common: dict[str, Any] = {
        "loop": "uvloop",
        # httptools, bounded: request line, header count and bytes, and the time to send them (http_limits.py).
        "http": bounded_protocol(
            HeaderLimits(
                max_url_bytes=settings.max_url_bytes,
                max_header_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                header_timeout_s=settings.header_timeout_ms / 1000,
            )
        ),
        "log_level": settings.log_level,
        "log_config": None,  # our handlers (JSON, ids, masking) stay in charge
        "access_log": settings.log_level == "debug",
        # Forwarding headers are believed only from ASH_TRUSTED_PROXIES (api/middleware/network.py), not uvicorn's
        # default.
        "proxy_headers": False,
        "timeout_graceful_shutdown": 30,
    }
    if settings.mode == "runner":
        # Coordinators are its only clients: mutual TLS on its one port when configured.
        config = uvicorn.Config(
            app, host=settings.host, port=settings.runner_port, **common, **tls.server_options(settings)
        )
        _Server(config, app).run_until_stopped()
    elif settings.mode == "coordinator" and settings.tls_enabled:
        _serve_two(app, settings, common)
    else:
        _Server(uvicorn.Config(app, host=settings.host, port=settings.port, **common), app).run_until_stopped()


def _end_idle_streams(app: Any) -> None:
    """At the stop signal, before uvicorn's graceful wait: streams idle between turns end (api/sse.py)."""
    services = getattr(app.state, "services", None)
    if services is not None:
        services.streams.end_idle()


class _Server(uvicorn.Server):
    """uvicorn's server, which also ends idle SSE streams when told to stop: otherwise one `ash session tail`
    keeps the server in its graceful wait for the full 30 s."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None

    def run_until_stopped(self) -> None:
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: a second Ctrl-C ends it quietly
            self.run()

    async def serve(self, sockets: list[Any] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:  # a signal handler: the loop does the work, between its callbacks
            self._loop.call_soon_threadsafe(_end_idle_streams, self._app)


class _Listener(uvicorn.Server):
    """One of two listeners of one app: the process handles the signals for both (see _serve_two)."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


def _serve_two(app: Any, settings: Settings, common: dict[str, Any]) -> None:
    """A coordinator with mutual TLS: the public API on ASH_PORT, runner traffic on ASH_INTERNAL_PORT (TLS,
    client certificate required). api/middleware/signed.py keeps each listener to its own routes."""
    public = _Listener(uvicorn.Config(app, host=settings.host, port=settings.port, **common))
    internal = _Listener(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.internal_port,
            lifespan="off",  # the public listener runs the app's start-up and shutdown
            **common,
            **tls.server_options(settings),
        )
    )

    async def both() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stop, public, internal)

        async def public_then_stop() -> None:
            try:
                await public.serve()
            finally:
                internal.should_exit = True

        await asyncio.gather(public_then_stop(), _after_startup(public, internal))

    uvloop.run(both())


async def _after_startup(public: uvicorn.Server, internal: uvicorn.Server) -> None:
    """The internal listener starts once the app has started (the public listener ran its lifespan)."""
    while not public.started:
        if public.should_exit:
            return
        await asyncio.sleep(0.05)
    await internal.serve()


def _stop(*servers: uvicorn.Server) -> None:
    for server in servers:
        server.should_exit = True
    _end_idle_streams(servers[0].config.app)
