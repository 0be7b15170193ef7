"""Model credentials: the server's own key, or per-session keys stored encrypted at rest.

A stored key is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from `ASH_CREDENTIAL_KEY`, with the
credential's tenant and id as associated data: a ciphertext copied into another row, or another tenant, does not
decrypt. The plaintext exists only in the server's memory (the model gateway's route of a live sandbox); the API
returns a masked hint, and sandboxes never receive any real key (see gateway/).
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import Invalid, NotConfigured, NotFound
from .ids import parse_uuid
from .settings import Settings
from .store.models import Credential, utcnow
from .store.repository import Store

# "openai" is accepted because ash-ai-sdk clients send it; like bedrock and vertex it can be stored, not used.
CredentialType = Literal["anthropic", "bedrock", "vertex", "custom", "openai"]
CREDENTIAL_TYPES: tuple[CredentialType, ...] = ("anthropic", "bedrock", "vertex", "custom", "openai")
# Types the model gateway can put on a Messages API request. Bedrock and Vertex need request signing (SigV4,
# Google OAuth) that the gateway does not do yet.
GATEWAY_TYPES = frozenset({"anthropic", "custom"})
SEALED_PREFIX = "v1."
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class UpstreamAuth:
    """How the gateway authenticates a request upstream: one header, never seen by the sandbox."""

    header: str  # "x-api-key" or "authorization"
    value: str
    credential_id: str | None = None

    def __repr__(self) -> str:  # keep keys out of logs and tracebacks
        return f"UpstreamAuth(header={self.header!r}, credential_id={self.credential_id!r})"


def server_auth(settings: Settings) -> UpstreamAuth | None:
    """The server's own credential: ANTHROPIC_API_KEY, else ANTHROPIC_AUTH_TOKEN, else none."""
    if settings.anthropic_api_key is not None and settings.anthropic_api_key.get_secret_value():
        return UpstreamAuth("x-api-key", settings.anthropic_api_key.get_secret_value())
    if settings.anthropic_auth_token is not None and settings.anthropic_auth_token.get_secret_value():
        return UpstreamAuth("authorization", "Bearer " + settings.anthropic_auth_token.get_secret_value())
    return None


def mask(key: str) -> str:
    """A hint that tells keys apart without revealing them: `sk-ant-…x7Qa`."""
    if len(key) < 16:
        return "…"
    prefix = key[:7] if key.startswith("sk-") else ""
    return f"{prefix}…{key[-4:]}"


class CredentialCipher:
    def __init__(self, master: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"ash-credentials", info=b"ash credential key v1")
        self._aead = AESGCM(key.derive(master))

    @staticmethod
    def _aad(tenant_id: str, credential_id: uuid.UUID) -> bytes:
        return f"ash-credential\x00{tenant_id}\x00{credential_id}".encode()

    def seal(self, plaintext: str, tenant_id: str, credential_id: uuid.UUID) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._aad(tenant_id, credential_id))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, tenant_id: str, credential_id: uuid.UUID) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise ValueError("unknown credential format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(SEALED_PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(tenant_id, credential_id))
        except (InvalidTag, binascii.Error) as exc:
            raise ValueError("credential does not decrypt with this ASH_CREDENTIAL_KEY") from exc
        return plain.decode()


class CredentialService:
    def __init__(self, store: Store, cipher: CredentialCipher | None) -> None:
        self._store = store
        self._cipher = cipher

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> CredentialService:
        key = settings.credential_key
        return cls(store, CredentialCipher(key.get_secret_value().encode()) if key is not None else None)

    def _require_cipher(self) -> CredentialCipher:
        if self._cipher is None:
            raise NotConfigured(
                "credential storage is not configured on this server: set ASH_CREDENTIAL_KEY (16+ random "
                "characters) and restart it"
            )
        return self._cipher

    async def create(self, tenant_id: str, kind: str, key: str, label: str | None) -> Credential:
        if kind not in CREDENTIAL_TYPES:
            raise Invalid(f"credential type must be one of {list(CREDENTIAL_TYPES)}", type=kind)
        key = key.strip()
        if not key or any(ch in key for ch in "\r\n\x00"):
            raise Invalid("credential key must be a non-empty single line")
        cipher = self._require_cipher()
        credential_id = uuid.uuid4()
        return await self._store.add_credential(
            Credential(
                id=credential_id,
                tenant_id=tenant_id,
                type=kind,
                label=label,
                hint=mask(key),
                secret=cipher.seal(key, tenant_id, credential_id),
                active=True,
                created_at=utcnow(),
            )
        )

    async def list(self, tenant_id: str) -> Sequence[Credential]:
        return await self._store.list_credentials(tenant_id)

    async def get(self, tenant_id: str, credential_id: str) -> Credential:
        parsed = parse_uuid(credential_id)
        credential = await self._store.get_credential(tenant_id, parsed) if parsed is not None else None
        if credential is None:
            raise NotFound(f"Credential not found: {credential_id}", credential_id=credential_id)
        return credential

    async def delete(self, tenant_id: str, credential_id: str) -> None:
        credential = await self.get(tenant_id, credential_id)
        await self._store.delete_credential(tenant_id, credential.id)

    async def upstream_auth(self, tenant_id: str, credential_id: str) -> UpstreamAuth:
        """The decrypted credential as the gateway will send it. NotFound, Invalid (unusable type) or 503."""
        credential = await self.get(tenant_id, credential_id)
        if not credential.active:
            raise Invalid(f"credential {credential_id} is not active", credential_id=credential_id)
        if credential.type not in GATEWAY_TYPES:
            raise Invalid(
                f"credentials of type {credential.type} cannot be used for sessions yet (the model gateway "
                f"speaks the Anthropic API: use type anthropic or custom)",
                credential_id=credential_id,
            )
        cipher = self._require_cipher()
        try:
            key = cipher.open(credential.secret, credential.tenant_id, credential.id)
        except ValueError as exc:
            raise NotConfigured(
                f"credential {credential_id} cannot be decrypted: ASH_CREDENTIAL_KEY changed since it was stored",
                credential_id=credential_id,
            ) from exc
        await self._store.touch_credential(credential.id, utcnow())
        if credential.type == "custom":
            # A custom gateway or proxy in front of the API: the key is a bearer token (ANTHROPIC_AUTH_TOKEN).
            return UpstreamAuth("authorization", "Bearer " + key, str(credential.id))
        return UpstreamAuth("x-api-key", key, str(credential.id))
