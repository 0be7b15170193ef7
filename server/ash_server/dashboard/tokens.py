"""What the dashboard's cookie holds: a signed, expiring token naming an API key, never the key itself.

A browser cannot send `Authorization: Bearer`, so signing in exchanges an API key for a token
`v1.<tenant>.<key id>.<expiry>.<mac>`, an HMAC-SHA256 under a key derived from the server secret. Verifying it needs
no state; the key it names is then looked up on every request (dashboard/signin.py), so revoking or expiring the API
key ends its dashboard sessions at once, as it does for the API. Signing out only clears the cookie: a copied token
stays valid until it expires (TOKEN_LIFETIME_S) or its key is revoked.

The sign-in form's CSRF token is signed the same way, so a value planted in a cookie by another site cannot pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

VERSION = "v1"
TOKEN_LIFETIME_S = 12 * 3600
# The signing key is the server's keyed hash of this label. It starts with NUL, which no header value or
# environment variable can hold, so no API key's stored hash can ever equal the signing key.
SIGNING_LABEL = "\x00ash dashboard token v1"


@dataclass(frozen=True, slots=True)
class Claims:
    tenant_id: str
    key_id: uuid.UUID
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def derived(cls, keyed_hash: Callable[[str], str]) -> TokenSigner:
        """From the server's API key hash (`Authenticator.hash`): every server sharing the secret agrees."""
        return cls(bytes.fromhex(keyed_hash(SIGNING_LABEL)))

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\n{payload}".encode(), hashlib.sha256).digest())

    def issue(self, tenant_id: str, key_id: uuid.UUID, now: float) -> str:
        payload = f"{VERSION}.{_b64(tenant_id.encode())}.{key_id.hex}.{int(now) + TOKEN_LIFETIME_S}"
        return f"{payload}.{self._mac('session', payload)}"

    def verify(self, token: str, now: float) -> Claims | None:
        """The token's claims if it is well formed, signed by us and not expired; None otherwise."""
        payload, _, mac = token.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac("session", payload).encode()):
            return None
        try:
            version, tenant, key_id, expires = payload.split(".")
            claims = Claims(_unb64(tenant).decode(), uuid.UUID(hex=key_id), int(expires))
        except (ValueError, binascii.Error):
            return None
        if version != VERSION or claims.expires_at <= now:
            return None
        return claims

    def csrf_token(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('csrf', nonce)}"

    def csrf_valid(self, token: str) -> bool:
        nonce, _, mac = token.rpartition(".")
        return bool(nonce) and hmac.compare_digest(mac.encode(), self._mac("csrf", nonce).encode())
