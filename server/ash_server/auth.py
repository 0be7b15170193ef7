"""Bearer API keys: generated as `ash_<random>`, stored only as an HMAC keyed with the server secret.

A verified key is cached in the process (`VerifiedKeys`), so a request costs no query; each revocation bumps one
counter in the database (`key_revisions`) that every server re-reads at most every `REVISION_CHECK_S` and drops its
cache when it changed. A revoked key therefore stops working at once on the server that revoked it and within
`REVISION_CHECK_S` plus one read on every other server and runner sharing the database; expiry is checked on every
request from the cached expiry time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import Conflict, Invalid, NotFound, Unauthorized
from .ratelimit import RateLimiter, too_many
from .settings import Settings
from .store.models import DEFAULT_TENANT, ApiKey, Tenant, utcnow
from .store.repository import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "ash_"
# What the API shows of a key: `ash_` and 8 of its 43 random characters, enough to tell keys apart.
SHOWN_PREFIX_CHARS = 12
MAX_KEYS_PER_TENANT = 100
API_KEY_FILE = "api-key"
# The label of the key registered from ASH_API_KEY: reserved (no API-created key takes it), and while the variable
# holds that key it cannot be revoked through the API (the environment would silently disagree with the database).
ENV_KEY_LABEL = "ASH_API_KEY"
SECRET_KEY_FILE = "secret-key"
# lastUsedAt is informational; writing it on every request would put a database write on the hot path.
TOUCH_INTERVAL = timedelta(seconds=60)
# How stale another server's revocation may be here: the revision counter is re-read at most this often.
REVISION_CHECK_S = 0.5
# Verified keys kept per process; past it the cache starts again (keys are re-verified with one read each).
MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a tenant and the id of its API key. A signed internal request carries one too
    (cluster/signing.py), empty when a machine (a runner) sends it for itself."""

    tenant_id: str
    key_id: str


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def write_private(path: Path, content: str) -> None:
    """Create or replace a file readable by its owner only, never world-readable even for an instant."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)


def load_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    if settings.mode == "coordinator" and settings.internal_secret is not None:
        # Every coordinator must hash keys alike; they all hold the internal secret, so derive it from that.
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ash api key hashing v1")
        return derived.derive(settings.internal_secret.get_secret_value().encode()).hex().encode()
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass(slots=True)
class CachedKey:
    """What a request needs of a verified key (never its hash's plaintext)."""

    id: uuid.UUID
    tenant_id: str
    expires_at: datetime | None
    last_used_at: datetime | None


class VerifiedKeys:
    """Keys verified against the database, by hash, valid while the revision counter has not moved.

    A lookup remembers the revision it started under and is cached only if the revision is still that one, so a key
    read just before a revocation can never outlive the refresh that sees it.
    """

    def __init__(
        self,
        read_revision: Callable[[], Awaitable[int]],
        *,
        check_every_s: float = REVISION_CHECK_S,
        max_keys: int = MAX_CACHED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_revision = read_revision
        self._check_every_s = check_every_s
        self._max_keys = max_keys
        self._clock = clock
        self._keys: dict[str, CachedKey] = {}
        self._revision: int | None = None
        self._next_check = 0.0
        self._checking = asyncio.Lock()

    async def revision(self) -> int | None:
        """The current revision, re-read if due (one read for all the requests waiting on it)."""
        if self._clock() >= self._next_check:
            async with self._checking:
                if self._clock() >= self._next_check:
                    revision = await self._read_revision()
                    if revision != self._revision:
                        self._keys.clear()
                        self._revision = revision
                    self._next_check = self._clock() + self._check_every_s
        return self._revision

    def get(self, key_hash: str) -> CachedKey | None:
        return self._keys.get(key_hash)

    def put(self, key_hash: str, key: CachedKey, revision: int | None) -> None:
        if revision is None or revision != self._revision:
            return
        if len(self._keys) >= self._max_keys:
            self._keys.clear()
        self._keys[key_hash] = key

    def invalidate(self) -> None:
        """Forget every key and re-read the revision on the next request (after a revocation here)."""
        self._keys.clear()
        self._next_check = 0.0

    def __len__(self) -> int:
        return len(self._keys)


class Authenticator:
    def __init__(
        self,
        store: Store,
        secret: bytes,
        *,
        failures: RateLimiter | None = None,
        verified: VerifiedKeys | None = None,
    ) -> None:
        self._store = store
        self._secret = secret
        self.verified = verified if verified is not None else VerifiedKeys(store.key_revision)
        # The hash of ASH_API_KEY when this server was started with one (set by bootstrap).
        self._env_key_hash: str | None = None
        # Failed authentications per client IP: guessing keys gets 429s, not an oracle at full speed.
        self._failures = failures or RateLimiter(0)

    def hash(self, key: str) -> str:
        return hash_key(self._secret, key)

    async def authenticate(self, authorization: str | None, client_ip: str | None = None) -> Principal:
        if client_ip is not None:
            wait = self._failures.retry_after(client_ip)
            if wait is not None:
                raise too_many("failed authentications", self._failures.per_minute, wait)
        try:
            return await self._authenticate(authorization)
        except Unauthorized:
            if client_ip is not None:
                self._failures.hit(client_ip)
            raise

    async def _authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("Missing Authorization header (expected: Bearer <api key>)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Invalid API key: malformed Authorization header (expected: Bearer <api key>)")
        key_hash = self.hash(token)
        revision = await self.verified.revision()
        key = self.verified.get(key_hash) or await self._verify(key_hash, revision)
        now = utcnow()
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized("Invalid API key: it has expired")
        if key.last_used_at is None or now - key.last_used_at > TOUCH_INTERVAL:
            await self._store.touch_api_key(key.id, now)
            key.last_used_at = now
        return Principal(tenant_id=key.tenant_id, key_id=str(key.id))

    async def _verify(self, key_hash: str, revision: int | None) -> CachedKey:
        """Read a key not in the cache; unknown and revoked keys are never cached (each costs a read, and failed
        authentications are rate limited per client IP)."""
        row = await self._store.find_api_key(key_hash)
        if row is None or row.revoked_at is not None:
            raise Unauthorized("Invalid API key")
        key = CachedKey(id=row.id, tenant_id=row.tenant_id, expires_at=row.expires_at, last_used_at=row.last_used_at)
        self.verified.put(key_hash, key, revision)
        return key

    async def principal_of_key(self, tenant_id: str, key_id: uuid.UUID) -> Principal | None:
        """The principal of a key named by id (a dashboard sign-in's), if the key is still valid."""
        key = await self._store.get_api_key(tenant_id, key_id)
        if key is None or key.revoked_at is not None or _expired(key, utcnow()):
            return None
        return Principal(tenant_id=key.tenant_id, key_id=str(key.id))

    async def bootstrap(self, settings: Settings) -> None:
        """Make sure at least one key can reach the server.

        ASH_API_KEY is registered for the default tenant. Without it, the very first start generates a key and
        leaves the plaintext in the data dir (0600) for `ash` on this host to pick up.
        """
        await self._store.add_tenant(Tenant(id=DEFAULT_TENANT, label="default tenant", created_at=utcnow()))
        if settings.api_key is not None:
            plaintext = settings.api_key.get_secret_value()
            self._env_key_hash = self.hash(plaintext)
            existing = await self._store.find_api_key(self._env_key_hash)
            if existing is not None and existing.revoked_at is not None:
                # Revoked before it became immutable (or in the database by hand): say so, loudly, every start;
                # un-revoking it silently could bring back a key someone meant to retire.
                log.error(
                    "ASH_API_KEY was revoked at %s: it authenticates nothing; set a new ASH_API_KEY",
                    existing.revoked_at.isoformat(),
                )
            if existing is None:
                # If-absent: servers starting together with the same ASH_API_KEY may both get here.
                await self._store.add_api_key_if_absent(
                    ApiKey(
                        tenant_id=DEFAULT_TENANT,
                        key_hash=self.hash(plaintext),
                        prefix=plaintext[:SHOWN_PREFIX_CHARS],
                        label=ENV_KEY_LABEL,
                    )
                )
            return
        if await self._store.count_api_keys() > 0:
            return
        plaintext = generate_key()
        await self._store.add_api_key(
            ApiKey(
                tenant_id=DEFAULT_TENANT,
                key_hash=self.hash(plaintext),
                prefix=plaintext[:SHOWN_PREFIX_CHARS],
                label="generated on first start",
            )
        )
        write_private(settings.data_dir / API_KEY_FILE, plaintext + "\n")
        log.info("generated an API key; it is in %s", settings.data_dir / API_KEY_FILE)

    # -- Managing keys (the API's /api/api-keys and `ash admin`) ----------------------------------------------

    async def create_key(
        self, tenant_id: str, *, label: str | None = None, expires_at: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for the tenant: the stored row and the plaintext, which exists only in this return value."""
        now = utcnow()
        if label is not None and label.strip().upper() == ENV_KEY_LABEL:
            raise Invalid(f"the label {ENV_KEY_LABEL} is reserved for the key set in the server's environment")
        if expires_at is not None:
            expires_at = expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None else expires_at
            if expires_at <= now:
                raise Invalid("expiresAt must be in the future", expires_at=expires_at.isoformat())
        if await self._store.count_usable_api_keys(tenant_id, now) >= MAX_KEYS_PER_TENANT:
            raise Conflict(
                f"a tenant may have at most {MAX_KEYS_PER_TENANT} usable API keys; revoke some first",
                limit=MAX_KEYS_PER_TENANT,
            )
        plaintext = generate_key()
        key = await self._store.add_api_key(
            ApiKey(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                key_hash=self.hash(plaintext),
                prefix=plaintext[:SHOWN_PREFIX_CHARS],
                label=label,
                created_at=now,
                expires_at=expires_at,
            )
        )
        return key, plaintext

    async def list_keys(self, tenant_id: str) -> Sequence[ApiKey]:
        return await self._store.list_api_keys(tenant_id)

    async def get_key(self, tenant_id: str, key_id: uuid.UUID) -> ApiKey:
        key = await self._store.get_api_key(tenant_id, key_id)
        if key is None:
            raise NotFound(f"API key {key_id} not found", key_id=str(key_id))
        return key

    async def revoke_key(self, tenant_id: str, key_id: uuid.UUID) -> ApiKey:
        """Revoke a key of the tenant; it fails authentication from the next request on. Refused (409) for the
        tenant's last usable key, which would lock the tenant out (create the replacement first)."""
        key = await self.get_key(tenant_id, key_id)
        if key.revoked_at is not None:
            return key
        if self._env_key_hash is not None and key.key_hash == self._env_key_hash:
            raise Conflict(
                f"this key is {ENV_KEY_LABEL}, set in the server's environment: change or unset the variable and "
                "restart the server to retire it",
                key_id=str(key_id),
            )
        now = utcnow()
        usable = key.expires_at is None or key.expires_at > now
        if usable and await self._store.count_usable_api_keys(tenant_id, now) <= 1:
            raise Conflict(
                "this is the tenant's last usable API key: create its replacement before revoking it",
                key_id=str(key_id),
            )
        revoked = await self._store.revoke_api_key(tenant_id, key_id, now)
        self.verified.invalidate()
        assert revoked is not None
        return revoked


def _expired(key: ApiKey, now: datetime) -> bool:
    return key.expires_at is not None and key.expires_at <= now
