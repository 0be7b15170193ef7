"""The span tree of a session's life, with an in-memory exporter, and the trace context reaching the bridge."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ash_server.app import create_app
from ash_server.settings import Settings
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, short_tempdir

pytestmark = pytest.mark.slow


def parent_name(span: ReadableSpan, spans: list[ReadableSpan]) -> str | None:
    if span.parent is None:
        return None
    return next((s.name for s in spans if s.context is not None and s.context.span_id == span.parent.span_id), "?")


async def test_span_tree_of_a_session(model: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    model.on("trace me", text("traced"))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-tracing")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    root: Path = short_tempdir()
    settings = Settings(data_dir=root / "data", agent_roots=str(REPO / "examples"))
    app = create_app(settings, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        key = (settings.data_dir / "api-key").read_text().strip()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ash", headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            path = str(REPO / "examples" / "hello-agent")
            assert (await client.post("/api/agents", json={"name": "traced", "path": path})).status_code == 201
            sid = (await client.post("/api/sessions", json={"agent": "traced"})).json()["session"]["id"]
            reply = await client.post(f"/api/sessions/{sid}/messages", json={"content": "trace me"})
            assert "event: done" in reply.text
            sandbox_log = (await client.get(f"/api/sessions/{sid}/logs")).json()["logs"]
            await client.post(f"/api/sessions/{sid}/stop")
            assert (await client.post(f"/api/sessions/{sid}/resume")).status_code == 200
    spans = list(exporter.get_finished_spans())
    tree = sorted((s.name, parent_name(s, spans)) for s in spans)
    assert tree == sorted(
        [
            ("session.create", None),
            ("sandbox.start", "session.create"),
            ("session.message", None),
            ("bridge.query", "session.message"),
            ("session.resume", None),
            ("sandbox.start", "session.resume"),
        ]
    )
    assert all(s.attributes and s.attributes.get("ash.session_id") == sid for s in spans)
    # The bridge got the turn's trace context with its query (it says so in the sandbox log).
    query = next(s for s in spans if s.name == "bridge.query")
    assert query.context is not None
    trace_id = format(query.context.trace_id, "032x")
    assert any(f"traceparent=00-{trace_id}-" in entry["text"] for entry in sandbox_log)
