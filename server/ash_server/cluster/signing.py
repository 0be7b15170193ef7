"""Signed internal requests: the shared secret (ASH_INTERNAL_SECRET) never travels; each request carries an HMAC.

The signature covers the method, the path with its query, a digest of the body, a timestamp, a nonce and the
principal a coordinator acts for (tenant and API key id), so none of them can be changed in flight. A request is
accepted within `MAX_SKEW_S` of its timestamp and only once (nonces are remembered that long): a recorded request
cannot be replayed. The HMAC key is derived from the secret (HKDF), so the secret itself is never used as a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..auth import Principal
from ..errors import Unauthorized

SIGNATURE = "x-ash-signature"
TIMESTAMP = "x-ash-timestamp"
NONCE = "x-ash-nonce"
TENANT = "x-ash-tenant"
KEY_ID = "x-ash-key-id"
SIGNED_HEADERS = (SIGNATURE, TIMESTAMP, NONCE, TENANT, KEY_ID)
MAX_SKEW_S = 60.0
MAX_NONCES = 200_000


def derive_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ash internal requests v1").derive(
        secret.encode()
    )


def _message(method: str, target: bytes, body_sha256: str, ts: str, nonce: str, tenant: str, key_id: str) -> bytes:
    fields = [method.upper(), body_sha256, ts, nonce, tenant, key_id]
    return target + b"\n" + "\n".join(fields).encode()


class RequestSigner:
    def __init__(self, secret: str) -> None:
        self._key = derive_key(secret)
        self._seen: OrderedDict[str, float] = OrderedDict()

    def sign(self, method: str, target: bytes, body: bytes, *, tenant: str = "", key_id: str = "") -> dict[str, str]:
        """Headers that authenticate this request. `target`: the raw path and query as sent (`/a/b?c=d`)."""
        ts = f"{time.time():.3f}"
        nonce = secrets.token_hex(16)
        digest = hashlib.sha256(body).hexdigest()
        mac = hmac.new(self._key, _message(method, target, digest, ts, nonce, tenant, key_id), hashlib.sha256)
        return {SIGNATURE: mac.hexdigest(), TIMESTAMP: ts, NONCE: nonce, TENANT: tenant, KEY_ID: key_id}

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """What can be refused before the body is read: no signature, a malformed or stale timestamp, no nonce
        (so an unsigned caller is told 401 whatever it sends, and its body is never read)."""
        if not headers.get(SIGNATURE):
            raise Unauthorized("internal endpoint: the request is not signed (ASH_INTERNAL_SECRET)")
        try:
            age = abs(time.time() - float(headers.get(TIMESTAMP, "")))
        except ValueError:
            raise Unauthorized("internal endpoint: malformed timestamp") from None
        if age > MAX_SKEW_S:
            raise Unauthorized("internal endpoint: request timestamp too far from now (check the clocks)")
        if not headers.get(NONCE):
            raise Unauthorized("internal endpoint: the request has no nonce")

    def verify(self, method: str, target: bytes, body: bytes, headers: Mapping[str, str]) -> Principal:
        """The principal of a correctly signed, fresh, first-seen request (a coordinator forwarding a tenant's
        request; empty for a machine: a runner's own call); Unauthorized otherwise."""
        self.check_headers(headers)
        signature = headers[SIGNATURE]
        ts = headers[TIMESTAMP]
        nonce = headers[NONCE]
        tenant = headers.get(TENANT, "")
        key_id = headers.get(KEY_ID, "")
        digest = hashlib.sha256(body).hexdigest()
        expected = hmac.new(self._key, _message(method, target, digest, ts, nonce, tenant, key_id), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            raise Unauthorized("internal endpoint: bad signature (is ASH_INTERNAL_SECRET the same everywhere?)")
        self._remember(nonce)
        return Principal(tenant_id=tenant, key_id=key_id)

    def _remember(self, nonce: str) -> None:
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values())) < now - 2 * MAX_SKEW_S or len(self._seen) > MAX_NONCES):
            self._seen.popitem(last=False)
        if not nonce or nonce in self._seen:
            raise Unauthorized("internal endpoint: replayed request")
        self._seen[nonce] = now
