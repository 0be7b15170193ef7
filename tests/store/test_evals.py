"""EvalStore on both engines: scoped by tenant and agent; results follow their run; counts come from one query."""

from __future__ import annotations

import uuid

from ash_server.store.evals import EvalCase, EvalResultStatus, EvalRun, EvalRunStatus, EvalStore
from ash_server.store.models import utcnow
from ash_server.store.repository import Store


async def test_cases_runs_and_results_are_scoped_by_tenant_and_agent(store: Store) -> None:
    evals = EvalStore(store)
    case = EvalCase(tenant_id="t1", agent_name="a", question="q", expected_topics=["x"], tags=["t"])
    await evals.add_cases([case, EvalCase(tenant_id="t2", agent_name="a", question="other tenant")])
    assert [c.question for c in await evals.list_cases("t1", "a")] == ["q"]
    assert await evals.get_case("t2", "a", case.id) is None
    assert await evals.get_case("t1", "b", case.id) is None
    assert (await evals.get_case("t1", "a", case.id)) is not None

    run = EvalRun(tenant_id="t1", agent_name="a", total_cases=1)
    await evals.add_run(run, [case.id])
    (result,) = await evals.list_results(run.id)
    assert result.status == EvalResultStatus.PENDING and result.eval_case_id == case.id
    assert await evals.get_result("t1", "a", result.id) is not None
    assert await evals.get_result("t2", "a", result.id) is None
    assert await evals.get_result("t1", "b", result.id) is None
    assert await evals.update_results(run.id, uuid.uuid4(), human_score=3) == 0
    assert await evals.update_results(run.id, None, human_score=3) == 1

    await evals.fail_unfinished_results(run.id, "stopped", utcnow())
    (failed,) = await evals.list_results(run.id)
    assert (failed.status, failed.error, failed.human_score) == (EvalResultStatus.ERROR, "stopped", 3)


async def test_run_counts_by_status_and_agent_count(store: Store) -> None:
    evals = EvalStore(store)
    for status in (EvalRunStatus.COMPLETED, EvalRunStatus.COMPLETED, EvalRunStatus.FAILED):
        await evals.add_run(EvalRun(tenant_id="t1", agent_name="a", status=status), [])
    await evals.add_run(EvalRun(tenant_id="t2", agent_name="a"), [])
    assert await evals.run_status_counts("t1") == {"completed": 2, "failed": 1}
    assert await evals.run_status_counts("t2") == {"pending": 1}
    assert [r.tenant_id for r in await evals.runs_with_status([EvalRunStatus.PENDING])] == ["t2"]
    assert await evals.count_agents("t1") == 0


async def test_a_run_is_claimed_by_one_server_and_recovered_only_by_it(store: Store) -> None:
    evals = EvalStore(store)
    run = EvalRun(tenant_id="t1", agent_name="a")
    await evals.add_run(run, [])
    claims = [await evals.claim_run(run.id, server) for server in ("server-a", "server-b", "server-a")]
    assert claims == [True, False, False]
    claimed = await evals.run_by_id(run.id)
    assert claimed is not None and (claimed.status, claimed.server_id) == (EvalRunStatus.RUNNING, "server-a")
    assert claimed.started_at is not None
    assert [r.id for r in await evals.runs_left_running("server-a")] == [run.id]
    assert await evals.runs_left_running("server-b") == []
