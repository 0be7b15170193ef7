"""The core in-process: the real app's services (sessions, pool, manager, store on SQLite) with sandboxes that run
the fake bridge (tests/fakes/bridge.py) as plain processes, so a test drives sessions in milliseconds without
bubblewrap or the Claude Code CLI. The end-to-end suites run the real parts; these test the core's logic."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ash_server.api.deps import Services
from ash_server.app import create_app
from ash_server.sessions.prompt import PromptOutcome, run_prompt
from ash_server.settings import Settings
from tests.support.server import short_tempdir

FAKE_BRIDGE = Path(__file__).resolve().parent.parent / "fakes" / "bridge.py"


@asynccontextmanager
async def core_services(**settings: Any) -> AsyncIterator[Services]:
    """The services of a standalone server on a fresh data dir, started and, after the block, shut down as uvicorn
    would."""
    root = short_tempdir()  # traversable by the sandbox user, and short enough for socket paths
    defaults: dict[str, Any] = {
        "sandbox_isolation": "none",
        "bridge_entry": f"{sys.executable} {FAKE_BRIDGE}",
        "queue_concurrency": 0,
        "warm_pool_size": 0,  # as in tests/support/server.py: the warm pool's own tests turn it on
    }
    config = Settings(data_dir=root / "data", **{**defaults, **settings})
    app = create_app(config)
    try:
        async with app.router.lifespan_context(app):
            services: Services = app.state.services
            yield services
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def deploy(services: Services, name: str = "core-agent", prompt: str = "# core agent") -> None:
    await services.agents.deploy("default", name, path=None, files=None, system_prompt=prompt, env=None)


async def new_session(services: Services, agent: str = "core-agent") -> uuid.UUID:
    return (await services.sessions.create("default", agent, {})).id


async def turn(services: Services, session_id: uuid.UUID, prompt: str) -> PromptOutcome:
    """One turn to its end, as a client-less prompt (sessions/prompt.py)."""
    return await asyncio.wait_for(run_prompt(services.sessions, "default", session_id, prompt), 30)
