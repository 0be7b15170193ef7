"""What a sandbox may spend through the model gateway, enforced at the gateway: the agent controls everything in
its sandbox (`maxBudgetUsd` and `maxTurns` are the CLI's, inside it), so the limits that hold are the ones here.

- a model allowlist (`ASH_GATEWAY_MODELS`, fnmatch patterns; empty: any model);
- a ceiling on a request's `max_tokens` (`ASH_GATEWAY_MAX_TOKENS`);
- calls per minute per session (`ASH_GATEWAY_CALLS_PER_MINUTE`, a token bucket: bursts up to the minute's
  allowance, then the pace);
- tokens per session, over its life (`ASH_GATEWAY_SESSION_TOKENS`), and per tenant over the last 24 hours
  (`ASH_GATEWAY_TENANT_TOKENS_PER_DAY`): every token the API reports (input, output, cache writes and reads).

Refusals answer in the Messages API's error shape (the CLI shows them as API errors) and are counted in
`ash_gateway_refusals_total{reason}`. Token budgets are checked before a call from what calls before it used: the
calls in flight when a budget runs out may pass it by at most their own size. The tenant's 24 h figure is re-read
from the usage table every `TENANT_REFRESH_S` (other servers' spending shows up then), this server's own calls
are added as they finish.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ..observability.metrics import Metrics
from ..ratelimit import RateLimiter
from ..store.models import utcnow
from ..store.repository import Store
from ..store.usage import UsageFilter

TENANT_REFRESH_S = 10.0
DAY = timedelta(hours=24)
TOKEN_KINDS = frozenset({"input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens"})


class Refusal(Exception):
    """A request the gateway answers itself, in the Messages API's error shape."""

    def __init__(self, status: int, kind: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """0 (or no models) means no limit of that kind."""

    max_tokens: int = 0
    calls_per_minute: int = 0
    session_tokens: int = 0
    tenant_tokens_per_day: int = 0
    models: tuple[str, ...] = ()


@dataclass(slots=True)
class _TenantSpend:
    read_at: float
    tokens: int  # the last 24 h as read from the usage table, plus this server's calls since


@dataclass(slots=True)
class ModelBudgets:
    limits: BudgetLimits
    store: Store
    metrics: Metrics
    clock: Callable[[], float] = time.monotonic
    _calls: RateLimiter = field(init=False)
    _sessions: dict[str, int] = field(init=False, default_factory=dict)
    _tenants: dict[str, _TenantSpend] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._calls = RateLimiter(self.limits.calls_per_minute, clock=self.clock)

    async def admit(self, tenant_id: str, session_id: str, body: bytes, *, spends: bool) -> None:
        """Refusal unless the call may go upstream. `spends`: a Messages call (count_tokens costs nothing)."""
        # The body is the whole conversation (often megabytes): parsed only when a limit needs a field of it.
        reads_body = bool(self.limits.models) or (spends and self.limits.max_tokens > 0)
        request = _json_object(body) if reads_body else {}
        model = request.get("model")
        if self.limits.models and not (
            isinstance(model, str) and any(fnmatch.fnmatchcase(model, p) for p in self.limits.models)
        ):
            self._refuse("model", 400, "invalid_request_error", f"model {model!r} is not allowed (ASH_GATEWAY_MODELS)")
        if not spends:
            return
        max_tokens = request.get("max_tokens")
        if self.limits.max_tokens and isinstance(max_tokens, int) and max_tokens > self.limits.max_tokens:
            self._refuse(
                "max_tokens",
                400,
                "invalid_request_error",
                f"max_tokens {max_tokens} is above this server's ceiling of {self.limits.max_tokens} "
                "(ASH_GATEWAY_MAX_TOKENS)",
            )
        if self._calls.enabled:
            wait = self._calls.hit(session_id)
            if wait is not None:
                self._refuse(
                    "calls_per_minute",
                    429,
                    "rate_limit_error",
                    f"this session may make {self.limits.calls_per_minute} model calls a minute "
                    "(ASH_GATEWAY_CALLS_PER_MINUTE)",
                    headers={"retry-after": str(max(1, round(wait)))},
                )
        if self.limits.session_tokens:
            used = await self._session_tokens(tenant_id, session_id)
            if used >= self.limits.session_tokens:
                self._refuse(
                    "session_tokens",
                    403,
                    "permission_error",
                    f"this session has used {used} of its {self.limits.session_tokens} tokens "
                    "(ASH_GATEWAY_SESSION_TOKENS); start a new session",
                )
        if self.limits.tenant_tokens_per_day:
            used = await self._tenant_tokens(tenant_id)
            if used >= self.limits.tenant_tokens_per_day:
                self._refuse(
                    "tenant_tokens",
                    429,
                    "rate_limit_error",
                    f"this tenant has used {used} of its {self.limits.tenant_tokens_per_day} tokens of the last "
                    "24 hours (ASH_GATEWAY_TENANT_TOKENS_PER_DAY)",
                    headers={"retry-after": "3600"},
                )

    def record(self, tenant_id: str, session_id: str, tokens: int) -> None:
        """A call finished having used `tokens`: count it against the session's and the tenant's budgets."""
        if session_id in self._sessions:
            self._sessions[session_id] += tokens
        spend = self._tenants.get(tenant_id)
        if spend is not None:
            spend.tokens += tokens

    def forget(self, session_id: str) -> None:
        """The session's sandbox went: its count is read again from the usage table if it comes back."""
        self._sessions.pop(session_id, None)

    async def _session_tokens(self, tenant_id: str, session_id: str) -> int:
        if session_id not in self._sessions:
            rows = await self.store.usage_totals(tenant_id, UsageFilter(session_id=uuid.UUID(session_id)))
            self._sessions[session_id] = _tokens(rows)
        return self._sessions[session_id]

    async def _tenant_tokens(self, tenant_id: str) -> int:
        spend = self._tenants.get(tenant_id)
        now = self.clock()
        if spend is None or now - spend.read_at >= TENANT_REFRESH_S:
            rows = await self.store.usage_totals(tenant_id, UsageFilter(after=utcnow() - DAY))
            spend = self._tenants[tenant_id] = _TenantSpend(read_at=now, tokens=_tokens(rows))
        return spend.tokens

    def _refuse(
        self, reason: str, status: int, kind: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.metrics.gateway_refusals.labels(reason).inc()
        raise Refusal(status, kind, message, headers=headers)


def _tokens(rows: list[tuple[str, str, float]]) -> int:
    return int(sum(value for _, kind, value in rows if kind in TOKEN_KINDS))


def _json_object(body: bytes) -> dict[str, object]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}  # upstream answers a body that is not JSON itself
    return parsed if isinstance(parsed, dict) else {}
