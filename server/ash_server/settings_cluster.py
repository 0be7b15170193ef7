"""The multi-machine part of the server's settings (`Settings` in settings.py takes it in): the internal secret and
TLS between coordinators and runners, a runner's identity, address and heartbeat. Read from `ASH_*` like the rest."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings


class ClusterSettings(BaseSettings):
    # -- Many machines (docs/self-hosting/multi-machine.md) ------------------------------------------------------
    internal_secret: SecretStr | None = Field(
        None,
        description="Shared secret that signs every request between coordinators and runners (both directions). "
        "Required in coordinator and runner mode; 32+ random characters, the same on every machine.",
    )

    tls_cert: Path | None = Field(
        None, description="PEM certificate this machine presents to the others (mutual TLS between machines)."
    )

    tls_key: Path | None = Field(None, description="Private key of ASH_TLS_CERT.")

    tls_ca: Path | None = Field(
        None, description="CA bundle that the other machines' certificates must chain to (mutual TLS)."
    )

    internal_port: int = Field(
        4201,
        ge=1,
        le=65535,
        description="Coordinator with mutual TLS: the port runners register and heartbeat on (TLS, client "
        "certificate required). Without TLS they use the API port.",
    )

    runner_id: str | None = Field(
        None, description="Runner mode: this runner's id, unique in the deployment. Unset: the host name."
    )

    server_url: str | None = Field(
        None,
        description="Runner mode: the coordinator's URL for registration and heartbeats (its internal port with "
        "mutual TLS).",
    )

    runner_port: int = Field(4200, ge=1, le=65535, description="Runner mode: the port coordinators call.")

    runner_advertise_host: str | None = Field(
        None, description="Runner mode: the address coordinators reach this runner at. Unset: the host name."
    )

    runner_max_sandboxes: int | None = Field(
        None, ge=1, description="Runner mode: sandboxes this runner hosts at most. Unset: ASH_MAX_SANDBOXES."
    )

    heartbeat_interval_ms: int = Field(
        5000, ge=100, description="How often a runner reports its load and liveness to the coordinator."
    )

    runner_liveness_timeout_ms: int = Field(
        15_000,
        ge=200,
        description="A runner silent this long is dead: its sessions move to live runners at their next request.",
    )

    @field_validator("internal_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("use 32+ random characters (for example: openssl rand -hex 32)")
        return value

    @field_validator("runner_id")
    @classmethod
    def _runner_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", value):
            raise ValueError("a runner id is 1-63 letters, digits, '.', '_' or '-'")
        return value

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None and self.tls_ca is not None

    @property
    def effective_runner_id(self) -> str:
        return self.runner_id or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:63]

    @property
    def runner_url(self) -> str:
        """Where coordinators reach this runner."""
        host = self.runner_advertise_host or socket.gethostname()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{'https' if self.tls_enabled else 'http'}://{host}:{self.runner_port}"
