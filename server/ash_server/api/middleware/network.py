"""The network edge: whose forwarding headers are believed (ASH_TRUSTED_PROXIES) and which browser origins may
call the API (ASH_ALLOWED_ORIGINS). Both off by default: the client is the peer of the connection, and browsers on
other origins get no CORS headers."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ...settings import Settings

CORS_METHODS = ["GET", "POST", "PATCH", "DELETE"]
CORS_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"]
CORS_EXPOSED = ["Retry-After", "X-Request-ID", "X-Ash-Source"]


def install_network_middleware(app: FastAPI, settings: Settings) -> None:
    """Call after every other middleware: these two must be the outermost layers."""
    origins = settings.allowed_origin_list
    if origins:
        # Outside the size limit, rate limits and errors, so a browser can read a 413 or 429 too. No cookies are
        # involved (bearer keys only), hence no credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
    proxies = settings.trusted_proxy_list
    if proxies:
        # Outermost: request ids, logs, metrics and the per-IP limits all see the client, not the proxy. The
        # client is the right-most X-Forwarded-For entry that is not itself a trusted proxy; a client cannot
        # spoof past its own proxy's entry.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
