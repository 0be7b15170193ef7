"""/api/agents/{name}/eval-cases: an agent's eval cases (the reference's routes/evals.ts, cases part)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Response

from ...errors import Invalid, NotFound
from ...store.evals import EvalCase, EvalStore
from ...store.models import Agent
from ..deps import PrincipalDep, ServicesDep
from ..schemas.evals import (
    EvalCaseCreate,
    EvalCaseImport,
    EvalCasePublic,
    EvalCaseResponse,
    EvalCasesResponse,
    EvalCaseUpdate,
    ImportedResponse,
)

router = APIRouter(prefix="/api/agents/{name}", tags=["evals"])

CATEGORY = Query(None, max_length=255)
IS_ACTIVE = Query(None, alias="isActive")


async def agent_of(services: ServicesDep, principal: PrincipalDep, name: str) -> Agent:
    agent = await services.store.get_agent(principal.tenant_id, name)
    if agent is None:
        raise NotFound(f"Agent not found: no agent named {name!r}", agent=name)
    return agent


async def _case(services: ServicesDep, principal: PrincipalDep, name: str, case_id: uuid.UUID) -> EvalCase:
    agent = await agent_of(services, principal, name)
    case = await EvalStore(services.store).get_case(principal.tenant_id, agent.name, case_id)
    if case is None:
        raise NotFound(f"Eval case not found: no case {case_id} of agent {name!r}")
    return case


def _new(agent: Agent, body: EvalCaseCreate) -> EvalCase:
    # Every field of the body is a column of the same name (chat turns as plain dicts).
    return EvalCase(tenant_id=agent.tenant_id, agent_name=agent.name, **body.model_dump())


# Import and export come before /{case_id}, which would take their names for ids.
@router.post("/eval-cases/import", response_model=ImportedResponse)
async def import_cases(
    name: str, body: EvalCaseImport, principal: PrincipalDep, services: ServicesDep
) -> ImportedResponse:
    agent = await agent_of(services, principal, name)
    await EvalStore(services.store).add_cases([_new(agent, c) for c in body.cases])
    return ImportedResponse(imported=len(body.cases))


@router.get("/eval-cases/export", response_model=EvalCasesResponse)
async def export_cases(name: str, principal: PrincipalDep, services: ServicesDep) -> EvalCasesResponse:
    # Every case of the agent: the list without filters (a docstring would be the operation's description).
    return await list_cases(name, principal, services, category=None, is_active=None)


@router.get("/eval-cases", response_model=EvalCasesResponse)
async def list_cases(
    name: str,
    principal: PrincipalDep,
    services: ServicesDep,
    category: str | None = CATEGORY,
    is_active: bool | None = IS_ACTIVE,
) -> EvalCasesResponse:
    agent = await agent_of(services, principal, name)
    cases = await EvalStore(services.store).list_cases(
        principal.tenant_id, agent.name, category=category or None, is_active=is_active
    )
    return EvalCasesResponse(cases=[EvalCasePublic.of(c) for c in cases])


@router.post("/eval-cases", status_code=201, response_model=EvalCaseResponse)
async def create_case(
    name: str, body: EvalCaseCreate, principal: PrincipalDep, services: ServicesDep
) -> EvalCaseResponse:
    agent = await agent_of(services, principal, name)
    case = _new(agent, body)
    await EvalStore(services.store).add_cases([case])
    return EvalCaseResponse(case=EvalCasePublic.of(case))


@router.get("/eval-cases/{case_id}", response_model=EvalCaseResponse)
async def get_case(name: str, case_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> EvalCaseResponse:
    return EvalCaseResponse(case=EvalCasePublic.of(await _case(services, principal, name, case_id)))


@router.patch("/eval-cases/{case_id}", response_model=EvalCaseResponse)
async def update_case(
    name: str, case_id: uuid.UUID, body: EvalCaseUpdate, principal: PrincipalDep, services: ServicesDep
) -> EvalCaseResponse:
    case = await _case(services, principal, name, case_id)
    values = body.model_dump(exclude_unset=True)
    for required in ("question", "is_active"):
        if required in values and values[required] is None:
            raise Invalid(f"{required} cannot be null")
    evals = EvalStore(services.store)
    if values:
        await evals.update_case(case.id, values)
    updated = await _case(services, principal, name, case_id)
    return EvalCaseResponse(case=EvalCasePublic.of(updated))


@router.delete("/eval-cases/{case_id}", status_code=204, response_class=Response)
async def delete_case(name: str, case_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    case = await _case(services, principal, name, case_id)
    await EvalStore(services.store).delete_case(case.id)
    return Response(status_code=204)
