"""Wire shapes of the evals and analytics routes (the reference's EvalCase, EvalRun, EvalResult, ...), camelCase."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import Field

from ...evals.scoring import passed
from ...store.evals import EvalResult, EvalResultStatus, EvalRunStatus
from . import Schema, UsageStats
from .base import BIGINT_MAX, Public

Topics = list[str] | None


class ChatTurn(Schema):
    role: str
    content: str


class EvalCaseUpdate(Schema):
    question: str | None = Field(None, min_length=1)
    expected_topics: Topics = None
    expected_not_topics: Topics = None
    reference_answer: str | None = None
    category: str | None = Field(None, max_length=255)
    tags: Topics = None
    chat_history: list[ChatTurn] | None = None
    is_active: bool | None = None


# An update's fields (in its order), with the question required and isActive true unless given. No docstring: it
# would become the schema's description in the OpenAPI document.
class EvalCaseCreate(EvalCaseUpdate):
    question: str = Field(min_length=1)
    is_active: bool = True


class EvalCaseImport(Schema):
    cases: list[EvalCaseCreate]


class EvalCasePublic(Public):
    id: uuid.UUID
    tenant_id: str
    agent_name: str
    question: str
    expected_topics: Topics
    expected_not_topics: Topics
    reference_answer: str | None
    category: str | None
    tags: Topics
    chat_history: list[ChatTurn] | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class EvalCaseResponse(Schema):
    case: EvalCasePublic


class EvalCasesResponse(Schema):
    cases: list[EvalCasePublic]


class ImportedResponse(Schema):
    imported: int


class EvalRunCreate(Schema):
    version_number: int | None = Field(None, ge=1, le=BIGINT_MAX)
    categories: list[str] | None = None
    tags: list[str] | None = None


class EvalRunSummary(Schema):
    avg_topic_score: float
    avg_safety_score: float
    avg_llm_judge_score: float | None
    avg_latency_ms: float
    pass_rate: float


class EvalRunPublic(Public):
    id: uuid.UUID
    tenant_id: str
    agent_name: str
    version_number: int | None
    status: EvalRunStatus
    total_cases: int
    completed_cases: int
    summary: EvalRunSummary | None
    filters: dict[str, Any] | None
    error: str | None = Field(description="Ours: why the run failed.")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class EvalRunResponse(Schema):
    run: EvalRunPublic


class EvalRunsResponse(Schema):
    runs: list[EvalRunPublic]


class EvalResultPublic(Public):
    id: uuid.UUID
    tenant_id: str
    eval_run_id: uuid.UUID
    eval_case_id: uuid.UUID
    agent_response: str | None
    topic_score: float | None
    safety_score: float | None
    llm_judge_score: float | None
    latency_ms: int | None
    status: EvalResultStatus
    error: str | None
    human_score: float | None
    human_notes: str | None
    created_at: datetime
    completed_at: datetime | None
    passed: bool | None = Field(None, description="Ours: the reference's pass rule (both scores >= 0.5), once scored.")

    @classmethod
    def of(cls, row: EvalResult, **values: Any) -> Self:
        if row.status == EvalResultStatus.COMPLETED:
            values = {"passed": passed(row.topic_score, row.safety_score), **values}
        return super().of(row, **values)


class EvalResultsResponse(Schema):
    results: list[EvalResultPublic]


class EvalResultResponse(Schema):
    result: EvalResultPublic


class HumanScore(Schema):
    human_score: float | None = Field(None, ge=1, le=5)
    human_notes: str | None = Field(None, max_length=10_000)


class RunScore(HumanScore):
    result_id: uuid.UUID | None = None


class ScoredResponse(Schema):
    scored: int
    results: list[EvalResultPublic]


class ComparedCase(Schema):
    case_id: uuid.UUID
    question: str
    result_a: EvalResultPublic | None
    result_b: EvalResultPublic | None


class Comparison(Schema):
    run_a: EvalRunPublic
    run_b: EvalRunPublic
    results: list[ComparedCase]


class ComparisonResponse(Schema):
    comparison: Comparison


class CountTotal(Schema):
    total: int


class SessionCounts(Schema):
    total: int
    by_status: dict[str, int]


class EvalCounts(Schema):
    total_runs: int
    by_status: dict[str, int]


class AnalyticsResponse(Schema):
    agents: CountTotal
    sessions: SessionCounts
    usage: UsageStats
    evals: EvalCounts
