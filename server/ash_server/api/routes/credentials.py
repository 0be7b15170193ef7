"""/api/credentials: store, list, inspect and delete model credentials. Keys go in, never come out."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from ..deps import PrincipalDep, ServicesDep
from ..schemas import CredentialCreate, CredentialPublic, CredentialResponse, CredentialsResponse

router = APIRouter(prefix="/api/credentials", tags=["credentials"])


@router.post("", status_code=201, response_model=CredentialResponse)
async def create_credential(
    body: CredentialCreate, principal: PrincipalDep, services: ServicesDep
) -> CredentialResponse:
    credential = await services.credentials.create(principal.tenant_id, body.type, body.key, body.label)
    return CredentialResponse(credential=CredentialPublic.of(credential))


@router.get("", response_model=CredentialsResponse)
async def list_credentials(principal: PrincipalDep, services: ServicesDep) -> CredentialsResponse:
    credentials = await services.credentials.list(principal.tenant_id)
    return CredentialsResponse(credentials=[CredentialPublic.of(c) for c in credentials])


@router.get("/{credential_id}", response_model=CredentialResponse)
async def get_credential(
    credential_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> CredentialResponse:
    credential = await services.credentials.get(principal.tenant_id, str(credential_id))
    return CredentialResponse(credential=CredentialPublic.of(credential))


@router.delete("/{credential_id}", status_code=204, response_class=Response)
async def delete_credential(credential_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    await services.credentials.delete(principal.tenant_id, str(credential_id))
    # Sandboxes already running with it lose it now, not at their next start.
    services.gateway.revoke_credential(str(credential_id))
    return Response(status_code=204)
