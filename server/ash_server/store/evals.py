"""Evals: cases, runs and results of an agent's evaluation (the reference's eval_cases / eval_runs / eval_results)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict, Unpack

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, Uuid, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .models import DEFAULT_TENANT, Agent, Base, JSONType, UTCDateTime, utcnow
from .repository import Store


class EvalRunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class EvalResultStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"


class EvalCase(Base):
    __tablename__ = "eval_cases"
    __table_args__ = (Index("ix_eval_cases_tenant_agent", "tenant_id", "agent_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    agent_name: Mapped[str] = mapped_column(String(255))
    question: Mapped[str] = mapped_column(Text)
    expected_topics: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    expected_not_topics: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    reference_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    category: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tags: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    chat_history: Mapped[list[dict[str, str]] | None] = mapped_column(JSONType, nullable=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EvalRun(Base):
    __tablename__ = "eval_runs"
    __table_args__ = (
        Index("ix_eval_runs_tenant_agent", "tenant_id", "agent_name"),
        # Start-up finds the runs a stopped server left pending or running.
        Index("ix_eval_runs_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    agent_name: Mapped[str] = mapped_column(String(255))
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=EvalRunStatus.PENDING)
    total_cases: Mapped[int] = mapped_column(Integer, default=0)
    completed_cases: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    filters: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Ours: why a run failed (the reference only sets the status).
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Ours: the server running it (claimed once, so two servers on one database never both run it).
    server_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EvalResult(Base):
    __tablename__ = "eval_results"
    __table_args__ = (
        Index("ix_eval_results_run", "eval_run_id"),
        Index("ix_eval_results_case", "eval_case_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_TENANT)
    eval_run_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("eval_runs.id", ondelete="CASCADE"))
    # No foreign key: a case deleted after a run keeps the run's results (the reference does the same).
    eval_case_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    agent_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    topic_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    safety_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    llm_judge_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=EvalResultStatus.PENDING)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    human_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    human_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RunChanges(TypedDict, total=False):
    """What of an eval run's row changes as it runs."""

    status: EvalRunStatus
    completed_cases: int
    summary: dict[str, Any]
    error: str
    completed_at: datetime


class ResultChanges(TypedDict, total=False):
    """What of an eval result's row changes as its case runs or a person scores it."""

    status: EvalResultStatus
    agent_response: str
    topic_score: float
    safety_score: float
    latency_ms: int
    error: str
    completed_at: datetime
    human_score: float
    human_notes: str


class EvalStore:
    """Every query is scoped by tenant and agent: another tenant's case, run or result is simply not found."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- Cases ----------------------------------------------------------------------------------------------

    async def add_cases(self, cases: Sequence[EvalCase]) -> None:
        async with self._store.db() as db, db.begin():
            db.add_all(cases)

    async def list_cases(
        self, tenant_id: str, agent: str, *, category: str | None = None, is_active: bool | None = None
    ) -> Sequence[EvalCase]:
        query = select(EvalCase).where(EvalCase.tenant_id == tenant_id, EvalCase.agent_name == agent)
        if category is not None:
            query = query.where(EvalCase.category == category)
        if is_active is not None:
            query = query.where(EvalCase.is_active == is_active)
        async with self._store.db() as db:
            return (await db.scalars(query.order_by(EvalCase.created_at, EvalCase.id))).all()

    async def get_case(self, tenant_id: str, agent: str, case_id: uuid.UUID) -> EvalCase | None:
        async with self._store.db() as db:
            found: EvalCase | None = await db.scalar(
                select(EvalCase).where(
                    EvalCase.id == case_id, EvalCase.tenant_id == tenant_id, EvalCase.agent_name == agent
                )
            )
            return found

    async def questions(self, case_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        async with self._store.db() as db:
            rows = (await db.execute(select(EvalCase.id, EvalCase.question).where(EvalCase.id.in_(case_ids)))).all()
            return {i: q for i, q in rows}

    async def update_case(self, case_id: uuid.UUID, values: dict[str, Any]) -> None:
        async with self._store.db() as db, db.begin():
            await db.execute(update(EvalCase).where(EvalCase.id == case_id).values(**values, updated_at=utcnow()))

    async def delete_case(self, case_id: uuid.UUID) -> None:
        async with self._store.db() as db, db.begin():
            await db.execute(delete(EvalCase).where(EvalCase.id == case_id))

    # -- Runs -----------------------------------------------------------------------------------------------

    async def add_run(self, run: EvalRun, case_ids: Sequence[uuid.UUID]) -> None:
        """The run and one pending result per case, together."""
        async with self._store.db() as db, db.begin():
            db.add(run)
            await db.flush()
            db.add_all(EvalResult(tenant_id=run.tenant_id, eval_run_id=run.id, eval_case_id=c) for c in case_ids)

    async def get_run(self, tenant_id: str, agent: str, run_id: uuid.UUID) -> EvalRun | None:
        async with self._store.db() as db:
            found: EvalRun | None = await db.scalar(
                select(EvalRun).where(EvalRun.id == run_id, EvalRun.tenant_id == tenant_id, EvalRun.agent_name == agent)
            )
            return found

    async def run_by_id(self, run_id: uuid.UUID) -> EvalRun | None:
        async with self._store.db() as db:
            return await db.get(EvalRun, run_id)

    async def list_runs(self, tenant_id: str, agent: str) -> Sequence[EvalRun]:
        query = select(EvalRun).where(EvalRun.tenant_id == tenant_id, EvalRun.agent_name == agent)
        async with self._store.db() as db:
            return (await db.scalars(query.order_by(EvalRun.created_at.desc(), EvalRun.id))).all()

    async def runs_with_status(self, statuses: Sequence[str]) -> Sequence[EvalRun]:
        async with self._store.db() as db:
            query = select(EvalRun).where(EvalRun.status.in_(statuses)).order_by(EvalRun.created_at)
            return (await db.scalars(query)).all()

    async def claim_run(self, run_id: uuid.UUID, server_id: str) -> bool:
        """Take a pending run for `server_id`; False when another server (or an earlier call) took it."""
        async with self._store.db() as db, db.begin():
            result = await db.execute(
                update(EvalRun)
                .where(EvalRun.id == run_id, EvalRun.status == EvalRunStatus.PENDING)
                .values(status=EvalRunStatus.RUNNING, server_id=server_id, started_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def runs_left_running(self, server_id: str) -> Sequence[EvalRun]:
        """The runs a previous process of this server was running (and those of servers before claims existed)."""
        query = select(EvalRun).where(
            EvalRun.status == EvalRunStatus.RUNNING,
            (EvalRun.server_id == server_id) | EvalRun.server_id.is_(None),
        )
        async with self._store.db() as db:
            return (await db.scalars(query)).all()

    async def update_run(self, run_id: uuid.UUID, **values: Unpack[RunChanges]) -> None:
        async with self._store.db() as db, db.begin():
            await db.execute(update(EvalRun).where(EvalRun.id == run_id).values(**values))

    async def run_status_counts(self, tenant_id: str) -> dict[str, int]:
        query = select(EvalRun.status, func.count()).where(EvalRun.tenant_id == tenant_id).group_by(EvalRun.status)
        async with self._store.db() as db:
            return {str(s): int(n) for s, n in (await db.execute(query)).all()}

    # -- Analytics (one GROUP BY or COUNT each) --------------------------------------------------------------

    async def count_agents(self, tenant_id: str) -> int:
        async with self._store.db() as db:
            query = select(func.count()).select_from(Agent).where(Agent.tenant_id == tenant_id)
            return int(await db.scalar(query) or 0)

    # -- Results --------------------------------------------------------------------------------------------

    async def list_results(self, run_id: uuid.UUID) -> Sequence[EvalResult]:
        query = select(EvalResult).where(EvalResult.eval_run_id == run_id)
        async with self._store.db() as db:
            return (await db.scalars(query.order_by(EvalResult.created_at, EvalResult.id))).all()

    async def get_result(self, tenant_id: str, agent: str, result_id: uuid.UUID) -> EvalResult | None:
        """A result of one of this agent's runs (the run names the agent; the result does not)."""
        query = (
            select(EvalResult)
            .join(EvalRun, EvalRun.id == EvalResult.eval_run_id)
            .where(EvalResult.id == result_id, EvalRun.tenant_id == tenant_id, EvalRun.agent_name == agent)
        )
        async with self._store.db() as db:
            found: EvalResult | None = await db.scalar(query)
            return found

    async def update_results(
        self, run_id: uuid.UUID, result_id: uuid.UUID | None, **values: Unpack[ResultChanges]
    ) -> int:
        query = update(EvalResult).where(EvalResult.eval_run_id == run_id)
        if result_id is not None:
            query = query.where(EvalResult.id == result_id)
        async with self._store.db() as db, db.begin():
            return int((await db.execute(query.values(**values))).rowcount)  # type: ignore[attr-defined]

    async def fail_unfinished_results(self, run_id: uuid.UUID, error: str, when: datetime) -> None:
        query = (
            update(EvalResult)
            .where(
                EvalResult.eval_run_id == run_id,
                EvalResult.status.in_([EvalResultStatus.PENDING, EvalResultStatus.RUNNING]),
            )
            .values(status=EvalResultStatus.ERROR, error=error, completed_at=when)
        )
        async with self._store.db() as db, db.begin():
            await db.execute(query)
