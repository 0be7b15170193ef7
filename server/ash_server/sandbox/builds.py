"""Dependency builds (dependencies.py) in sandboxes of the sandbox manager."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from ..gateway.network import operator_policy
from ..store.models import DEFAULT_TENANT
from .commands import CommandResult
from .manager import SandboxManager, SandboxRequest
from .sandbox import Sandbox

BUILD_AGENT = "(dependencies)"


class ManagedBuilds:
    """BuildSandboxes over the sandbox manager: a build is a sandbox with no session, for the operator's own
    tenant (its network ceiling applies), that may not call the model (never assigned) and reaches only the
    registries."""

    def __init__(self, manager: SandboxManager) -> None:
        self._manager = manager

    async def start_build(self, workdir: Path, registries: Sequence[str]) -> Sandbox:
        request = SandboxRequest(
            session_id=f"build-{uuid.uuid4().hex[:12]}",
            tenant_id=DEFAULT_TENANT,
            agent_dir=workdir,
            workspace=workdir,
            home=workdir / ".home",
            bridge_config={"cwd": str(workdir)},
            user_env={},
            agent_name=BUILD_AGENT,
            network=operator_policy(list(registries)),
            assigned=False,
        )
        return await self._manager.start(request)

    async def exec(self, sandbox: Sandbox, command: str, timeout_s: float) -> CommandResult:
        return await self._manager.exec(sandbox, command, timeout_s)

    async def stop(self, sandbox: Sandbox) -> None:
        await self._manager.stop(sandbox)
