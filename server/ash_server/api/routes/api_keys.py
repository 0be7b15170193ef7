"""/api/api-keys: a tenant's API keys. Create (the plaintext is shown once), list (prefixes only), revoke."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from ..deps import PrincipalDep, ServicesDep
from ..schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ApiKeyResponse, ApiKeysResponse

router = APIRouter(prefix="/api/api-keys", tags=["api-keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, principal: PrincipalDep, services: ServicesDep) -> ApiKeyCreated:
    key, plaintext = await services.auth.create_key(principal.tenant_id, label=body.label, expires_at=body.expires_at)
    return ApiKeyCreated(id=key.id, api_key=ApiKeyPublic.of(key), key=plaintext)


@router.get("", response_model=ApiKeysResponse)
async def list_api_keys(principal: PrincipalDep, services: ServicesDep) -> ApiKeysResponse:
    keys = [ApiKeyPublic.of(k) for k in await services.auth.list_keys(principal.tenant_id)]
    return ApiKeysResponse(keys=keys, api_keys=keys)


@router.get("/{key_id}", response_model=ApiKeyResponse)
async def get_api_key(key_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> ApiKeyResponse:
    return ApiKeyResponse(api_key=ApiKeyPublic.of(await services.auth.get_key(principal.tenant_id, key_id)))


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_api_key(key_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Revoke a key: from the next request on it is refused (401), on every server sharing the database. 204, as
    the reference answers; `GET /api/api-keys/{id}` shows `revokedAt`."""
    await services.auth.revoke_key(principal.tenant_id, key_id)
    return Response(status_code=204)
