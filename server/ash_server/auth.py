"""Bearer API keys: generated as `ash_<random>`, stored only as an HMAC keyed with the server secret."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from .errors import Unauthorized
from .settings import Settings
from .store.models import DEFAULT_TENANT, ApiKey, utcnow
from .store.repository import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "ash_"
API_KEY_FILE = "api-key"
SECRET_KEY_FILE = "secret-key"
# lastUsedAt is informational; writing it on every request would put a database write on the hot path.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Principal:
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
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip().encode()


class Authenticator:
    def __init__(self, store: Store, secret: bytes) -> None:
        self._store = store
        self._secret = secret

    def hash(self, key: str) -> str:
        return hash_key(self._secret, key)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing Authorization header (expected: Bearer <api key>)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("malformed Authorization header (expected: Bearer <api key>)")
        key = await self._store.find_api_key(self.hash(token))
        now = utcnow()
        if key is None or key.revoked_at is not None:
            raise Unauthorized("invalid API key")
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized("API key has expired")
        if key.last_used_at is None or now - key.last_used_at > TOUCH_INTERVAL:
            await self._store.touch_api_key(key.id, now)
        return Principal(tenant_id=key.tenant_id, key_id=str(key.id))

    async def bootstrap(self, settings: Settings) -> None:
        """Make sure at least one key can reach the server.

        ASH_API_KEY is registered for the default tenant. Without it, the very first start generates a key and
        leaves the plaintext in the data dir (0600) for `ash` on this host to pick up.
        """
        if settings.api_key is not None:
            plaintext = settings.api_key.get_secret_value()
            if await self._store.find_api_key(self.hash(plaintext)) is None:
                await self._store.add_api_key(
                    ApiKey(
                        tenant_id=DEFAULT_TENANT,
                        key_hash=self.hash(plaintext),
                        prefix=plaintext[:8],
                        label="ASH_API_KEY",
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
                prefix=plaintext[:8],
                label="generated on first start",
            )
        )
        write_private(settings.data_dir / API_KEY_FILE, plaintext + "\n")
        log.info("generated an API key; it is in %s", settings.data_dir / API_KEY_FILE)
