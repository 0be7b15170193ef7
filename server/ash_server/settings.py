"""Every setting of the server, read once from `ASH_*` (and a few `ANTHROPIC_*`) environment variables.

docs/configuration.md lists the same variables; tests/test_settings.py keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from .paths import DataDir
from .settings_cluster import ClusterSettings
from .settings_sandbox import SandboxSettings
from .states import NetworkCeiling, ServerMode

DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"


def split_list(value: str) -> list[str]:
    """`a, b,c` → ["a", "b", "c"]: the format of the list-valued settings."""
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(SandboxSettings, ClusterSettings):
    """Every setting, its sandbox and multi-machine parts included (settings_sandbox.py, settings_cluster.py)."""

    model_config = SettingsConfigDict(env_prefix="ASH_", extra="ignore", frozen=True)

    port: int = Field(4100, ge=1, le=65535, description="API server port.")
    host: str = Field(
        "127.0.0.1",
        description="Bind address. Loopback by default; containers and hosts behind a load balancer set 0.0.0.0.",
    )
    data_dir: Path = Field(Path("./data"), description="Persistent storage: database, agents, sessions, sandboxes.")
    mode: ServerMode = Field(
        ServerMode.STANDALONE,
        description="standalone (one machine), coordinator (public API; sessions run on runners) or runner "
        "(hosts sandboxes for coordinators; `ash runner` sets it). docs/self-hosting/multi-machine.md.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database. Unset: SQLite at <data dir>/ash.db."
    )
    database_pool_size: int = Field(10, ge=1, description="Connections each server keeps open to PostgreSQL.")
    database_max_overflow: int = Field(
        10, ge=0, description="Connections opened beyond the pool size under load (closed again when returned)."
    )
    database_pool_timeout_ms: int = Field(
        30_000, ge=100, description="How long a request waits for a free database connection before it fails."
    )
    database_startup_timeout_ms: int = Field(
        60_000, ge=0, description="How long the server retries connecting to the database at start, with backoff."
    )
    queue_concurrency: int = Field(
        2, ge=0, description="Queue items this server runs at once (0: this server runs none, it only takes them)."
    )
    queue_poll_ms: int = Field(1000, ge=10, description="How often an idle queue worker looks for items.")
    queue_retry_delay_ms: int = Field(
        5000, ge=0, description="A failed queue item waits this long times 2^(failures-1) (at most 5 minutes)."
    )
    queue_lease_ms: int = Field(
        60_000,
        ge=1000,
        description="A running queue item's claim; renewed while it runs. When its server dies, another takes "
        "the item over once the claim has run out.",
    )
    session_retention_ms: int = Field(
        7 * 24 * 3_600_000,
        ge=0,
        description="How long an ended session's files (workspace, transcript, snapshots) are kept.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="A bearer API key accepted for the default tenant. Unset: the first start generates one and "
        "writes it to <data dir>/api-key (mode 0600).",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Server secret used to hash API keys (HMAC). Unset: generated on first start and kept in "
        "<data dir>/secret-key (mode 0600).",
    )
    snapshot_url: str | None = Field(
        None, description="Where session snapshots go (file:///path, s3://bucket/prefix, gs://bucket/prefix)."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint for s3:// snapshots (an S3-compatible store, or a test server)."
    )
    debug_timing: bool = Field(False, description="Log per-message hot-path timings.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one object per line with request, session and sandbox ids; `text` for people."
    )
    dependency_registries: str = Field(
        "pypi.org,files.pythonhosted.org,registry.npmjs.org",
        description="What an agent's dependency build (requirements.txt, package.json) may reach: the package "
        "registries, comma-separated (egress allowlist entries; docs/mcp.md).",
    )
    dependency_build_timeout_s: float = Field(
        600, gt=0, le=3600, description="How long one dependency install (pip or npm) may take before it fails."
    )
    agent_roots: str = Field(
        "",
        description="Folders on the server from which agents may be deployed by `path` (os.pathsep- or "
        "comma-separated); a relative `path` is taken under the first. Empty: `<data dir>/sources` only. `none`: "
        "deploying by path is refused and agents are uploaded as files.",
    )
    network_ceilings: str = Field(
        "default=public",
        description="The most network each tenant's agents may ask for: `tenant=ceiling` pairs, comma-separated, "
        "`*` for every tenant not named (otherwise none). Ceilings: `none`; `public` (allowlists of public "
        "destinations); `private` (allowlists may also name loopback and private addresses literally); `full` "
        "(the host's network, unfiltered: the API port, host services, the cloud metadata endpoint).",
    )
    path_deploy_tenants: str = Field(
        "default",
        description="Tenants that may deploy agents by `path` (comma-separated ids; `*`: every tenant). A path deploy "
        "reads the server's disk, so by default only the operator's tenant (`default`) may; other tenants upload "
        "their agents' files.",
    )
    max_agent_files: int = Field(
        10_000, ge=1, description="Most files and folders an agent deploy may hold (a path deploy or an upload)."
    )
    max_header_bytes: int = Field(
        32_768,
        ge=1024,
        le=1_048_576,
        description="Largest request header block (bytes); past it the connection gets 431 and is closed.",
    )
    max_headers: int = Field(100, ge=10, le=10_000, description="Most request headers; past it: 431.")
    max_url_bytes: int = Field(
        16_384, ge=1024, le=1_048_576, description="Longest request target (path and query, bytes); past it: 414."
    )
    header_timeout_ms: int = Field(
        15_000,
        ge=100,
        description="How long a client may take to send a request's headers (from its first byte, or from the "
        "connection); past it: 408 and the connection is closed (slow-header attacks hold no memory).",
    )
    public_docs: bool = Field(
        False,
        description="Serve /docs, /redoc and the OpenAPI document (/openapi.json, /docs/json) without a key. Off: "
        "they need one like every route but /health (they map the whole API, internal routes included).",
    )
    metrics_token: SecretStr | None = Field(
        None, description="A bearer token that may read /metrics only (for scrapers). API keys work too."
    )
    sse_keepalive_ms: int = Field(15_000, ge=100, description="Interval of SSE keepalive comments on quiet streams.")
    sse_write_timeout_ms: int = Field(
        30_000, ge=100, description="A stream client that accepts no data for this long is dropped (the turn goes on)."
    )
    sse_retry_ms: int = Field(3000, ge=0, description="Reconnection delay advised to SSE clients (`retry:`).")
    max_attachment_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest total of decoded image/document blocks in one message."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest accepted request body; larger ones get 413 before parsing."
    )
    max_message_chars: int = Field(500_000, ge=1, description="Longest accepted text message.")
    max_upload_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1,
        description="Largest accepted upload (sum of decoded files): agent files, session files, workspace bundles.",
    )
    rate_limit_sessions_per_minute: int = Field(
        60, ge=0, description="Sessions one API key may create per minute (bursts up to this many); 0: no limit."
    )
    rate_limit_messages_per_minute: int = Field(
        300, ge=0, description="Messages one API key may send per minute (bursts up to this many); 0: no limit."
    )
    rate_limit_auth_failures_per_minute: int = Field(
        30, ge=0, description="Failed authentications one client IP may make per minute before 429; 0: no limit."
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated IPs or CIDR networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed. Empty: none (the client IP is the connection's).",
    )
    allowed_origins: str = Field(
        "", description="Comma-separated browser origins allowed to call the API (CORS). Empty: none."
    )

    # The model endpoint and key the sandboxes use. Deliberately the standard Anthropic names, so the same
    # server runs against the real API, a proxy or a test double without Ash-specific configuration.
    anthropic_base_url: str = Field(
        DEFAULT_ANTHROPIC_BASE_URL,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "ASH_ANTHROPIC_BASE_URL"),
        description="Where model traffic goes.",
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "ASH_ANTHROPIC_API_KEY"),
        description="Claude API key. Only the model gateway holds it; sandboxes get a placeholder.",
    )
    anthropic_auth_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_AUTH_TOKEN", "ASH_ANTHROPIC_AUTH_TOKEN"),
        description="Bearer token for the model endpoint, used when ANTHROPIC_API_KEY is unset.",
    )
    credential_key: SecretStr | None = Field(
        None,
        description="Master key that encrypts stored credentials (/api/credentials). Unset: storing credentials "
        "is refused.",
    )
    gateway_max_request_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest model request a sandbox may send through the gateway."
    )
    gateway_models: str = Field(
        "",
        description="Models sandboxes may call (comma-separated fnmatch patterns, e.g. `claude-sonnet-*`); empty: any.",
    )
    gateway_max_tokens: int = Field(
        0,
        ge=0,
        description="Largest `max_tokens` a model request may ask for (400 above it); 0: no ceiling (the Claude "
        "Code CLI asks for up to 128000 with some models).",
    )
    gateway_calls_per_minute: int = Field(
        60,
        ge=0,
        description="Model calls one session may make per minute (a bucket: bursts up to this, then the pace; 429 "
        "past it); 0: no limit.",
    )
    gateway_session_tokens: int = Field(
        0, ge=0, description="Tokens one session may use over its life (every kind the API reports); 0: no limit."
    )
    gateway_tenant_tokens_per_day: int = Field(
        0, ge=0, description="Tokens one tenant's sessions may use over the last 24 hours; 0: no limit."
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("api_key", "secret_key", "credential_key", "internal_secret")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if not raw:
            return None
        if raw.lower() in {"changeme", "change-me", "secret", "password", "xxx", "your-api-key"} or len(raw) < 16:
            raise ValueError("refusing a placeholder or short secret (use 16+ random characters)")
        return SecretStr(raw)

    @field_validator("network_ceilings")
    @classmethod
    def _ceilings(cls, value: str) -> str:
        parse_ceilings(value)  # ValueError with the reason
        return value

    @property
    def network_ceiling_map(self) -> dict[str, NetworkCeiling]:
        """ASH_NETWORK_CEILINGS as tenant -> ceiling; `*` is every tenant not named."""
        return parse_ceilings(self.network_ceilings)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for entry in split_list(value):
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for entry in split_list(value):
            if entry != "*" and not re.fullmatch(r"https?://[^/\s]+", entry):
                raise ValueError(f"{entry!r} is not an origin (scheme://host[:port], no path)")
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        return split_list(self.trusted_proxies)

    @property
    def allowed_origin_list(self) -> list[str]:
        return split_list(self.allowed_origins)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            return url
        return f"sqlite+aiosqlite:///{self.data_dir / 'ash.db'}"

    @property
    def path_deploy_tenant_ids(self) -> frozenset[str] | None:
        """The tenants allowed to deploy by path; None: every tenant."""
        ids = frozenset(t.strip() for t in self.path_deploy_tenants.split(",") if t.strip())
        return None if "*" in ids else ids

    @property
    def agent_root_paths(self) -> list[Path]:
        if self.agent_roots.strip().lower() == "none":
            return []
        parts = [p.strip() for chunk in self.agent_roots.split(",") for p in chunk.split(os.pathsep)]
        roots = [Path(p).expanduser().resolve() for p in parts if p]
        return roots or [DataDir(self.data_dir).sources.resolve()]


def parse_ceilings(spec: str) -> dict[str, NetworkCeiling]:
    ceilings: dict[str, NetworkCeiling] = {}
    for item in split_list(spec):
        tenant, sep, ceiling = (part.strip() for part in item.partition("="))
        if not sep or not tenant or ceiling.lower() not in set(NetworkCeiling):
            raise ValueError(
                f"invalid network ceiling {item!r}: expected tenant=ceiling, the ceiling one of "
                f"{', '.join(NetworkCeiling)}"
            )
        ceilings[tenant] = NetworkCeiling(ceiling.lower())
    return ceilings
