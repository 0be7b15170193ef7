"""/api/agents/{name}/eval-runs and eval-results: runs of an agent's eval cases, their results and human scores
(the reference's routes/evals.ts, runs part). A run starts in the background (evals/runner.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from ...errors import Invalid, NotConfigured, NotFound
from ...evals.runner import EvalRunner
from ...store.evals import EvalRun, EvalStore, ResultChanges
from ..deps import PrincipalDep, ServicesDep
from ..schemas.evals import (
    ComparedCase,
    Comparison,
    ComparisonResponse,
    EvalResultPublic,
    EvalResultResponse,
    EvalResultsResponse,
    EvalRunCreate,
    EvalRunPublic,
    EvalRunResponse,
    EvalRunsResponse,
    HumanScore,
    RunScore,
    ScoredResponse,
)
from .eval_cases import agent_of

router = APIRouter(prefix="/api/agents/{name}", tags=["evals"])

# Checked after the agent (not by FastAPI first), so another tenant's agent is a 404 whatever the query says.
RUN_A = Query(alias="runA")
RUN_B = Query(alias="runB")


async def _run(
    services: ServicesDep, principal: PrincipalDep, name: str, run_id: uuid.UUID, label: str = ""
) -> EvalRun:
    agent = await agent_of(services, principal, name)
    run = await EvalStore(services.store).get_run(principal.tenant_id, agent.name, run_id)
    if run is None:
        raise NotFound(f"Eval run {label}not found: no run {run_id} of agent {name!r}")
    return run


def _human(body: HumanScore) -> ResultChanges:
    values: ResultChanges = {}
    if body.human_score is not None:
        values["human_score"] = body.human_score
    if body.human_notes is not None:
        values["human_notes"] = body.human_notes
    if not values:
        raise Invalid("Provide humanScore and/or humanNotes")
    return values


# Compare comes before /{run_id}, which would take its name for an id.
@router.get("/eval-runs/compare", response_model=ComparisonResponse)
async def compare_runs(
    name: str,
    principal: PrincipalDep,
    services: ServicesDep,
    run_a: uuid.UUID = RUN_A,
    run_b: uuid.UUID = RUN_B,
) -> ComparisonResponse:
    await agent_of(services, principal, name)
    a = await _run(services, principal, name, run_a, "A ")
    b = await _run(services, principal, name, run_b, "B ")
    evals = EvalStore(services.store)
    by_case_a = {r.eval_case_id: r for r in await evals.list_results(a.id)}
    by_case_b = {r.eval_case_id: r for r in await evals.list_results(b.id)}
    case_ids = list(dict.fromkeys([*by_case_a, *by_case_b]))
    questions = await evals.questions(case_ids)
    results = [
        ComparedCase(
            case_id=c,
            question=questions.get(c, ""),
            result_a=EvalResultPublic.of(by_case_a[c]) if c in by_case_a else None,
            result_b=EvalResultPublic.of(by_case_b[c]) if c in by_case_b else None,
        )
        for c in case_ids
    ]
    return ComparisonResponse(
        comparison=Comparison(run_a=EvalRunPublic.of(a), run_b=EvalRunPublic.of(b), results=results)
    )


@router.post("/eval-runs", status_code=201, response_model=EvalRunResponse)
async def create_run(
    name: str, principal: PrincipalDep, services: ServicesDep, body: EvalRunCreate | None = None
) -> EvalRunResponse:
    runner: EvalRunner | None = services.evals
    if runner is None:
        raise NotConfigured("eval runs are not served in this mode")
    agent = await agent_of(services, principal, name)
    body = body or EvalRunCreate()
    # Every deploy numbers a version (agents.py); none above the agent's current one exists.
    if body.version_number is not None and body.version_number > agent.version:
        raise NotFound(f"Agent version {body.version_number} not found: agent {name!r} is at version {agent.version}")
    evals = EvalStore(services.store)
    cases = await evals.list_cases(principal.tenant_id, agent.name, is_active=True)
    if body.categories:
        cases = [c for c in cases if c.category is not None and c.category in body.categories]
    if body.tags:
        cases = [c for c in cases if c.tags and any(t in body.tags for t in c.tags)]
    filters = body.model_dump(by_alias=True, include={"categories", "tags"}, exclude_none=True)
    run = EvalRun(
        tenant_id=agent.tenant_id,
        agent_name=agent.name,
        version_number=body.version_number,
        total_cases=len(cases),
        filters=filters or None,
    )
    await evals.add_run(run, [c.id for c in cases])
    runner.start(run.id)
    return EvalRunResponse(run=EvalRunPublic.of(run))


@router.get("/eval-runs", response_model=EvalRunsResponse)
async def list_runs(name: str, principal: PrincipalDep, services: ServicesDep) -> EvalRunsResponse:
    agent = await agent_of(services, principal, name)
    runs = await EvalStore(services.store).list_runs(principal.tenant_id, agent.name)
    return EvalRunsResponse(runs=[EvalRunPublic.of(r) for r in runs])


@router.get("/eval-runs/{run_id}", response_model=EvalRunResponse)
async def get_run(name: str, run_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> EvalRunResponse:
    return EvalRunResponse(run=EvalRunPublic.of(await _run(services, principal, name, run_id)))


@router.get("/eval-runs/{run_id}/results", response_model=EvalResultsResponse)
async def run_results(
    name: str, run_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep
) -> EvalResultsResponse:
    run = await _run(services, principal, name, run_id)
    results = await EvalStore(services.store).list_results(run.id)
    return EvalResultsResponse(results=[EvalResultPublic.of(r) for r in results])


@router.post("/eval-runs/{run_id}/score", response_model=ScoredResponse)
async def score_run(
    name: str, run_id: uuid.UUID, body: RunScore, principal: PrincipalDep, services: ServicesDep
) -> ScoredResponse:
    """A human score for one result of the run (`resultId`), or for all of them."""
    run = await _run(services, principal, name, run_id)
    values = _human(body)
    evals = EvalStore(services.store)
    scored = await evals.update_results(run.id, body.result_id, **values)
    if body.result_id is not None and scored == 0:
        raise NotFound(f"Eval result not found in this run: no result {body.result_id} in run {run_id}")
    results = await evals.list_results(run.id)
    if body.result_id is not None:
        results = [r for r in results if r.id == body.result_id]
    return ScoredResponse(scored=scored, results=[EvalResultPublic.of(r) for r in results])


@router.patch("/eval-results/{result_id}", response_model=EvalResultResponse)
async def score_result(
    name: str, result_id: uuid.UUID, body: HumanScore, principal: PrincipalDep, services: ServicesDep
) -> EvalResultResponse:
    agent = await agent_of(services, principal, name)
    evals = EvalStore(services.store)
    result = await evals.get_result(principal.tenant_id, agent.name, result_id)
    if result is None:
        raise NotFound(f"Eval result not found: no result {result_id} of agent {name!r}")
    await evals.update_results(result.eval_run_id, result.id, **_human(body))
    updated = await evals.get_result(principal.tenant_id, agent.name, result_id)
    assert updated is not None
    return EvalResultResponse(result=EvalResultPublic.of(updated))
