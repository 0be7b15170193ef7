"""Run the server in the foreground with uvicorn (what `ash serve`, systemd and Docker run)."""

from __future__ import annotations

import os

import uvicorn

from .app import create_app
from .observability.logs import configure_logging
from .settings import Settings


def serve(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    secrets = [s.get_secret_value() for s in (settings.anthropic_api_key, settings.api_key) if s is not None]
    configure_logging(settings.log_level, settings.log_format, secrets)
    # Files the server creates are private unless it opens them up on purpose (DataDir.prepare does).
    os.umask(0o077)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        log_config=None,  # our handlers (JSON, ids, masking) stay in charge
        access_log=settings.log_level == "debug",
        # Forwarding headers are believed only from ASH_TRUSTED_PROXIES (api/network.py), not uvicorn's default.
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
