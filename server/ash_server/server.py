"""Run the server in the foreground with uvicorn (what `ash serve`, systemd and Docker run)."""

from __future__ import annotations

import logging
import os

import uvicorn

from .app import create_app
from .settings import Settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: one line per model call through the gateway. Keep that for debug.
    if level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def serve(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    # Files the server creates are private unless it opens them up on purpose (DataDir.prepare does).
    os.umask(0o077)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=30,
    )
