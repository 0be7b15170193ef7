"""Mutual TLS between coordinators and runners (optional; ASH_TLS_CERT, ASH_TLS_KEY, ASH_TLS_CA).

Both sides present a certificate chaining to ASH_TLS_CA and require one from the other; host names are checked
against the certificates (a runner's certificate names its ASH_RUNNER_ADVERTISE_HOST).
"""

from __future__ import annotations

import ssl
from typing import Any

from ..settings import Settings


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """For calls to another machine: trust only ASH_TLS_CA, present our certificate."""
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert is not None and settings.tls_key is not None and settings.tls_ca is not None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.tls_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return context


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options for a listener that only machines holding a certificate from ASH_TLS_CA can talk to."""
    if not settings.tls_enabled:
        return {}
    return {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_keyfile": str(settings.tls_key),
        "ssl_ca_certs": str(settings.tls_ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }


def check(settings: Settings) -> str | None:
    """What is wrong with the TLS settings, if anything."""
    given = [settings.tls_cert, settings.tls_key, settings.tls_ca]
    if any(given) and not all(given):
        return "mutual TLS needs all three of ASH_TLS_CERT, ASH_TLS_KEY and ASH_TLS_CA"
    if settings.tls_enabled:
        try:
            client_context(settings)
        except (OSError, ssl.SSLError) as exc:
            return f"cannot load the TLS certificate, key or CA: {exc}"
    return None
