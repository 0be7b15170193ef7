"""Every query the server makes, tenant-scoped. The domain talks to the database only through `Store`, one facade
over a module per aggregate: keys (API keys, tenants, credentials), agents, sessions, the timeline (messages,
events, stream frames), sandboxes and snapshots, usage, runners. The route families keep their tables and queries
in their own modules beside these (agent_versions.py, attachments.py, evals.py, queue.py)."""

from __future__ import annotations

from .agent_rows import AgentQueries
from .keys import KeyQueries
from .runners import RunnerQueries
from .sandboxes import SandboxQueries
from .sessions import SessionQueries
from .timeline import TimelineQueries
from .usage import UsageQueries

__all__ = ["Store"]


class Store(
    KeyQueries,
    AgentQueries,
    SessionQueries,
    TimelineQueries,
    SandboxQueries,
    UsageQueries,
    RunnerQueries,
):
    pass
