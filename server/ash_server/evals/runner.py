"""Runs eval runs in the background: each case is a real session (create, one prompt, end), scored on its answer.

A run is a task of the server that claimed it (several servers may share a database: a claim is one conditional
UPDATE, so exactly one runs it). A server that stops, gracefully or not, leaves no run of its own `running`: on
start, `recover` fails the runs its previous process was running (their sessions are gone with it) and starts the
pending ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from ..sessions.prompt import PromptSessions
from ..store.evals import EvalResult, EvalResultStatus, EvalRun, EvalRunStatus, EvalStore, ResultChanges
from ..store.models import utcnow
from .scoring import Scored, safety_score, summarize, topic_score

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the server stopped while the run was running"


class EvalRunner:
    def __init__(self, evals: EvalStore, sessions: PromptSessions, *, server_id: str) -> None:
        self._evals = evals
        self._sessions = sessions
        self._server_id = server_id
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    def start(self, run_id: uuid.UUID) -> None:
        task = asyncio.create_task(self._run(run_id), name=f"eval-run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def recover(self) -> int:
        """Fail the runs left running by a previous process; start the pending ones. Returns how many failed."""
        stale = await self._evals.runs_left_running(self._server_id)
        for run in stale:
            await self._fail(run.id, INTERRUPTED)
        for run in await self._evals.runs_with_status([EvalRunStatus.PENDING]):
            self.start(run.id)
        return len(stale)

    async def shutdown(self) -> None:
        """Cancel the runs of this process and mark them failed (a later start would find them running)."""
        tasks = list(self._tasks.items())
        for _, task in tasks:
            task.cancel()
        for run_id, task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # already logged by _run
                log.exception("eval run %s", run_id)
            await self._fail(run_id, INTERRUPTED)

    async def _fail(self, run_id: uuid.UUID, error: str) -> None:
        now = utcnow()
        await self._evals.fail_unfinished_results(run_id, error, now)
        await self._evals.update_run(run_id, status=EvalRunStatus.FAILED, error=error, completed_at=now)

    async def _run(self, run_id: uuid.UUID) -> None:
        if not await self._evals.claim_run(run_id, self._server_id):
            return  # another server runs it
        run = await self._evals.run_by_id(run_id)
        if run is None:
            return
        try:
            results = await self._evals.list_results(run_id)
            for done, result in enumerate(results, start=1):
                await self._case(run, result)
                await self._evals.update_run(run_id, completed_cases=done)
            scored = [
                Scored(r.status == EvalResultStatus.COMPLETED, r.topic_score, r.safety_score, r.latency_ms)
                for r in await self._evals.list_results(run_id)
            ]
            await self._evals.update_run(
                run_id, status=EvalRunStatus.COMPLETED, summary=summarize(scored), completed_at=utcnow()
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("eval run %s failed", run_id)
            await self._fail(run_id, f"the run failed: {exc}")

    async def _case(self, run: EvalRun, result: EvalResult) -> None:
        case = await self._evals.get_case(run.tenant_id, run.agent_name, result.eval_case_id)
        if case is None:
            await self._evals.update_results(
                run.id,
                result.id,
                status=EvalResultStatus.ERROR,
                error=f"Eval case {result.eval_case_id} not found",
                completed_at=utcnow(),
            )
            return
        await self._evals.update_results(run.id, result.id, status=EvalResultStatus.RUNNING)
        started = time.perf_counter()
        values: ResultChanges
        try:
            session_id = await self._sessions.open(run.tenant_id, run.agent_name)
            try:
                outcome = await self._sessions.prompt(run.tenant_id, session_id, case.question)
            finally:
                await self._sessions.end(run.tenant_id, session_id)
            if outcome.error is not None:
                raise RuntimeError(outcome.error)
            answer = outcome.text or outcome.answer
            values = {
                "status": EvalResultStatus.COMPLETED,
                "agent_response": answer,
                "topic_score": topic_score(answer, case.expected_topics),
                "safety_score": safety_score(answer, case.expected_not_topics),
            }
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one case failing does not fail the run, as in the reference
            values = {"status": EvalResultStatus.ERROR, "error": str(exc)}
        latency_ms = round((time.perf_counter() - started) * 1000)
        values["latency_ms"] = latency_ms
        values["completed_at"] = utcnow()
        await self._evals.update_results(run.id, result.id, **values)
