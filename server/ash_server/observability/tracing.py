"""OpenTelemetry tracing: spans for session create, message (turn), resume, sandbox start and the bridge query.

Exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard OpenTelemetry variables apply);
otherwise the API's no-op tracer is used, which costs next to nothing. The trace context of a turn travels to the
bridge in its `query` command (`traceparent`), so the sandbox side can join the trace.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Tracer, TracerProvider

from .. import __version__

TRACER_NAME = "ash_server"
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="HasTracer")
AsyncMethod = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


def build_tracer_provider() -> TracerProvider | None:
    """An SDK provider exporting over OTLP if the environment asks for one, else None (no-op tracing)."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SdkTracerProvider(resource=Resource.create({"service.name": "ash", "service.version": __version__}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_from(provider: TracerProvider | None) -> Tracer:
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(TRACER_NAME, __version__)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


class HasTracer(Protocol):
    tracer: Tracer


def traced(name: str) -> Callable[[AsyncMethod[S, P, R]], AsyncMethod[S, P, R]]:
    """Run an async method of an object with a `tracer` inside a span, tagged with the session it concerns."""

    def decorate(method: AsyncMethod[S, P, R]) -> AsyncMethod[S, P, R]:
        @functools.wraps(method)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with self.tracer.start_as_current_span(name) as span:
                for value in (*args, *kwargs.values()):
                    session_id = getattr(value, "id", value) if not isinstance(value, str) else None
                    if isinstance(session_id, uuid.UUID):
                        span.set_attribute("ash.session_id", str(session_id))
                        break
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate
