"""Starts, tracks and stops sandbox processes; after a crash, kills the previous server's leftovers.

The mechanism only: which sandboxes exist, when they start and stop, and what the database says about them is the
pool's business (pool.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ash_bridge import protocol

from ..errors import Invalid, SandboxError
from ..gateway import Gateway
from ..gateway.network import NetworkPolicy
from ..paths import DataDir, chown_tree, remove_tree
from ..settings import Settings
from .commands import CommandResult, run_command, shell_argv
from .dependencies import Bundle
from .disk import DiskQuota
from .environment import sandbox_environment
from .guard import SandboxGuard
from .gvisor import GvisorLauncher, host_pids
from .isolation import runtime_paths
from .launcher import Launcher, LaunchSpec
from .limits import LimitsBackend, agent_limits, server_limits
from .limits.rlimit import RlimitBackend
from .runtime_names import RuntimeChoiceError, choose
from .runtimes import Runtimes, RuntimeUnavailable
from .sandbox import Sandbox, kill_group

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SandboxRequest:
    """Everything that decides what a sandbox looks like for one session (sandbox/profile.py hashes it)."""

    session_id: str
    tenant_id: str
    agent_dir: Path
    workspace: Path
    home: Path
    bridge_config: dict[str, Any]
    user_env: dict[str, str]
    agent_name: str = ""
    # The agent's config: its limits and network (the rest is not the sandbox's business).
    agent_config: dict[str, Any] = field(default_factory=dict)
    credential_id: str | None = None
    # False for a sandbox started ahead of its session (the warm pool): no model traffic until it is claimed.
    assigned: bool = True
    # The agent's installed MCP dependencies (dependencies.py), bound read-only with PYTHONPATH/NODE_PATH set.
    dependencies: Bundle | None = None
    # A network policy made by the server itself (a dependency build's), instead of the agent config's.
    network: NetworkPolicy | None = None


Launched = Callable[[Sandbox], Awaitable[None]]
Exited = Callable[[Sandbox], Awaitable[None]]


class SandboxManager:
    def __init__(
        self,
        settings: Settings,
        data: DataDir,
        runtimes: Runtimes,
        *,
        gateway: Gateway,
        limits: LimitsBackend | None = None,
    ) -> None:
        self._settings = settings
        self._data = data
        self._runtimes = runtimes
        self._gateway = gateway
        self._limits: LimitsBackend = limits or RlimitBackend((settings.sandbox_ids or (os.getuid(), 0))[0])
        self._live: dict[str, Sandbox] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    @property
    def isolation(self) -> str:
        """The default runtime's launcher: bwrap, gvisor or none."""
        return self._runtimes.default.name

    @property
    def runtimes(self) -> Runtimes:
        return self._runtimes

    @property
    def bridge_start(self) -> str:
        """fork (from the bridge template, forking.py) or exec, for the default runtime's sandboxes."""
        return self._runtimes.default.bridge_start

    @property
    def limits_mechanism(self) -> str:
        """cgroup-v2, cgroup-v1 or rlimit (sandbox/limits/)."""
        return self._limits.name

    @property
    def default_network(self) -> str:
        """The network of a sandbox whose agent does not ask for more: none, unless nothing can take it away."""
        return "full" if self._runtimes.default.name == "none" else "none"

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) that owns sandbox files, or None when sandboxes run as the server's own user."""
        return self._settings.sandbox_ids

    @property
    def gateway(self) -> Gateway:
        return self._gateway

    @property
    def live(self) -> dict[str, Sandbox]:
        return self._live

    async def launcher_for(self, tenant_id: str, agent_config: dict[str, Any]) -> Launcher:
        """The launcher of the runtime a sandbox of this agent gets: its config's `runtime`, else its tenant's
        (ASH_TENANT_RUNTIMES), else the server's; RuntimeUnavailable (400) if this server cannot run it."""
        try:
            name = choose(agent_config, tenant_id, self._settings.tenant_runtime_map)
        except RuntimeChoiceError as exc:
            raise RuntimeUnavailable(str(exc), runtime=agent_config.get("runtime")) from exc
        return await self._runtimes.launcher(name)

    async def check_runtime(self, tenant_id: str, agent_config: dict[str, Any]) -> None:
        """Refuse (400) an agent config whose `runtime` its tenant may not use or this server cannot run, before it
        is stored. A coordinator checks only the name and the tenant: its runners run the sandboxes."""
        if "runtime" not in agent_config or agent_config["runtime"] is None:
            return
        if self._settings.mode == "coordinator":
            try:
                choose(agent_config, tenant_id, self._settings.tenant_runtime_map)
            except RuntimeChoiceError as exc:
                raise RuntimeUnavailable(str(exc), runtime=agent_config.get("runtime")) from exc
            return
        await self.launcher_for(tenant_id, agent_config)

    def bridge_argv(self) -> list[str]:
        if self._settings.bridge_entry:
            return shlex.split(self._settings.bridge_entry)
        return [sys.executable, "-I", "-m", "ash_bridge"]

    async def start(
        self, request: SandboxRequest, *, on_launched: Launched | None = None, on_exited: Exited | None = None
    ) -> Sandbox:
        """Start a sandbox and wait until its bridge is ready (its SDK client connected). `on_launched` runs once
        the process exists, before that wait: the pool records its pid then, so a crash leaves no orphan behind.
        `on_exited` runs if the sandbox ends on its own (crash, OOM, killed), after it was cleaned up. Capacity is
        the pool's business."""
        ids = self._settings.sandbox_ids
        launcher = await self.launcher_for(request.tenant_id, request.agent_config)
        sandbox_id = "sbx-" + uuid.uuid4().hex[:16]
        # In a thread: the chown walks the whole workspace (20,000 files take 0.5-0.9 s).
        directory = await asyncio.to_thread(self._prepare, request, sandbox_id, ids)
        config_path = directory / "bridge.json"

        sandbox = Sandbox(sandbox_id, request.session_id, directory)
        await sandbox.listen(ids)
        try:
            # The model socket (and the egress socket, if the agent allows some domains) exist before the bridge.
            link = await self._gateway.link(
                sandbox_id,
                directory,
                session_id=request.session_id,
                tenant_id=request.tenant_id,
                agent_name=request.agent_name,
                network_config=request.network or request.agent_config.get("network"),
                credential_id=request.credential_id,
                owner=ids,
                assigned=request.assigned,
            )
        except BaseException:
            await sandbox.close()
            await remove_tree(directory)
            raise
        env = sandbox_environment(
            injected={
                "HOME": str(request.home),
                "CLAUDE_CONFIG_DIR": str(request.home / ".claude"),
                "ASH_BRIDGE_SOCKET": str(sandbox.socket_path),
                "ASH_BRIDGE_CONFIG": str(config_path),
                "ASH_AGENT_DIR": str(request.agent_dir),
                "ASH_WORKSPACE_DIR": str(request.workspace),
                "ASH_SANDBOX_ID": sandbox_id,
                "ASH_SESSION_ID": request.session_id,
                "ASH_DEBUG_TIMING": "1" if self._settings.debug_timing else "0",
                "ASH_SERVER_PID": str(os.getpid()),
                **(request.dependencies.env() if request.dependencies is not None else {}),
                **link.env,
            },
            user=request.user_env,
        )
        guard: SandboxGuard | None = None
        try:
            guard = await self._guard(sandbox_id, request, launcher)
            spec = LaunchSpec(
                sandbox_id=sandbox_id,
                argv=self.bridge_argv(),
                env=env,
                workspace=request.workspace,
                home=request.home,
                sandbox_dir=directory,
                ids=ids,
                extra_ro_paths=[
                    *runtime_paths(),
                    *([request.dependencies.path] if request.dependencies is not None else []),
                ],
                network=link.network.mode,
                limits_argv=guard.confinement.argv,
                confinement=guard.confinement,
                file_size_bytes=guard.limits.file_size_bytes,
                runtime=launcher.name,
            )
            process = await launcher.launch(spec)
        except (OSError, SandboxError) as exc:
            await sandbox.close()
            await self._gateway.detach(sandbox_id)
            if guard is not None:
                await guard.release()
            await remove_tree(directory)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"could not start the sandbox: {exc}", sandbox_id=sandbox_id) from exc
        sandbox.attach(process, spec, guard)
        self._live[sandbox_id] = sandbox
        self._reapers.add(asyncio.create_task(self._forget_when_exited(sandbox, on_exited)))
        try:
            if on_launched is not None:
                await on_launched(sandbox)
            await sandbox.wait_ready(self._settings.bridge_start_timeout_ms / 1000)
        except BaseException:
            await self.stop(sandbox)
            raise
        return sandbox

    def _prepare(self, request: SandboxRequest, sandbox_id: str, ids: tuple[int, int] | None) -> Path:
        """The sandbox's folder with the bridge's config, and the session's folders given to the sandbox user."""
        directory = self._data.make_sandbox(request.tenant_id, sandbox_id)
        (directory / "bridge.json").write_text(json.dumps(request.bridge_config))
        request.home.mkdir(parents=True, exist_ok=True)
        (request.home / ".claude").mkdir(exist_ok=True)
        chown_tree(directory, ids)
        chown_tree(request.home, ids)
        chown_tree(request.workspace, ids)
        return directory

    async def _guard(self, sandbox_id: str, request: SandboxRequest, launcher: Launcher) -> SandboxGuard:
        """The limits of this session's agent, set up (cgroup created, disk measured) before the sandbox starts."""
        limits = agent_limits(request.agent_config, server_limits(self._settings))
        if isinstance(launcher, GvisorLauncher):
            limits = replace(limits, host_pids=host_pids(limits.max_pids))
        try:
            confinement = self._limits.confine(sandbox_id, limits)
        except OSError as exc:
            raise SandboxError(f"could not set up the sandbox's limits: {exc}", sandbox_id=sandbox_id) from exc
        if not request.assigned:
            # A warm sandbox starts for nobody yet: its CLI start must not take the CPU from live turns.
            try:
                confinement.prioritise(background=True)
            except OSError as exc:
                log.warning("warm sandbox %s runs with a full CPU share: %s", sandbox_id, exc)
        disk = DiskQuota([request.workspace, request.home], limits.disk_mb, limits.disk_inodes)
        await disk.start()
        return SandboxGuard(limits, confinement, disk)

    async def exec(self, sandbox: Sandbox, command: str, timeout_s: float) -> CommandResult:
        """Run `command` with bash inside the sandbox: same user, namespaces, cgroup and environment as its agent."""
        if not sandbox.alive or sandbox.spec is None or sandbox.pid is None:
            raise Invalid("the session has no running sandbox; send a message or resume it first")
        spec, launcher = sandbox.spec, self._launcher_of(sandbox.spec)
        inner, marker = shell_argv(command), None
        if isinstance(launcher, GvisorLauncher):
            inner, marker = launcher.marked(inner)
        try:
            argv = launcher.exec_argv(spec, sandbox.pid, inner)
        except SandboxError as exc:
            raise Invalid(f"the sandbox cannot run commands now: {exc.message}") from exc
        env = {k: v for k, v in spec.env.items() if k != "ASH_SERVER_PID"}  # the bridge's business, not a command's
        result = await run_command(argv, env=env, cwd=spec.workspace, timeout_s=timeout_s)
        if result.timed_out and marker is not None and isinstance(launcher, GvisorLauncher):
            await launcher.kill_marked(spec, marker)
        if result.exit_code == protocol.EXEC_NOT_RUNNING and result.stderr == protocol.EXEC_NOT_RUNNING_MESSAGE + "\n":
            raise Invalid(f"the sandbox cannot run commands now: {protocol.EXEC_NOT_RUNNING_MESSAGE}")
        return result

    def _launcher_of(self, spec: LaunchSpec) -> Launcher:
        for launcher in self._runtimes.launchers():
            if launcher.name == spec.runtime:
                return launcher
        return self._runtimes.default

    async def _release(self, sandbox: Sandbox) -> None:
        """What is left of a sandbox whose processes are gone: its gateway link, cgroups, launcher state, folder."""
        await self._gateway.detach(sandbox.id)
        if sandbox.guard is not None:
            await sandbox.guard.release()
        if sandbox.spec is not None:
            await self._launcher_of(sandbox.spec).release(sandbox.spec)
        await remove_tree(sandbox.directory)

    async def _forget_when_exited(self, sandbox: Sandbox, on_exited: Exited | None) -> None:
        """A sandbox that died on its own (crash, OOM, killed) stops counting against capacity at once."""
        await sandbox.wait_exited()
        if self._live.pop(sandbox.id, None) is not None:
            log.warning("sandbox %s of session %s ended: %s", sandbox.id, sandbox.session_id, sandbox.exit_reason)
            sandbox.kill()
            await sandbox.close()
            await self._release(sandbox)
            if on_exited is not None:
                try:
                    await on_exited(sandbox)
                except Exception:
                    log.exception("recording the end of sandbox %s failed", sandbox.id)
        task = asyncio.current_task()
        if task is not None:
            self._reapers.discard(task)

    async def stop(self, sandbox: Sandbox) -> None:
        self._live.pop(sandbox.id, None)  # first, so the exit is not reported as a crash
        await sandbox.stop()
        await self._release(sandbox)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(s) for s in list(self._live.values())), return_exceptions=True)
        for task in list(self._reapers):
            task.cancel()
        self._limits.close()
        await self._runtimes.close()

    async def reap_orphans(self, processes: Sequence[tuple[str, int | None]]) -> int:
        """Kill the process groups of the `(sandbox id, pid)` a previous (crashed) server of this data dir left
        behind, and remove their folders and cgroups. Returns how many were still running."""
        killed = 0
        for sandbox_id, pid in processes:
            if pid and _is_our_sandbox(pid, sandbox_id):
                kill_group(pid)
                killed += 1
        for launcher in self._runtimes.made():
            if await launcher.sweep():
                log.warning("removed the %s containers of sandboxes left over from a previous run", launcher.name)
        sandboxes = self._data.root / "sandboxes"
        for leftover in sandboxes.iterdir() if sandboxes.is_dir() else []:
            await remove_tree(leftover)
        if await self._limits.cleanup():
            log.warning("removed the cgroups of sandboxes left over from a previous run")
        if killed:
            log.warning("killed %d sandbox process group(s) left over from a previous run", killed)
        return killed


def _is_our_sandbox(pid: int, sandbox_id: str) -> bool:
    """True if `pid` still is that sandbox's bridge (pids get reused; never kill a stranger)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"ASH_SANDBOX_ID={sandbox_id}".encode() in environ.split(b"\0")


def sandbox_runtime_readable(ids: tuple[int, int] | None, paths: Sequence[Path] = ()) -> str | None:
    """Why the sandbox user cannot run the bridge's interpreter or reach `paths`, or None if it can.

    bubblewrap runs as the sandbox user too (ADR 0004), so what it binds into a sandbox (the runtime, the data
    dir) must be reachable by that user on the host, as it must be without bubblewrap.
    """
    if ids is None:
        return None
    python = Path(sys.executable)
    for target in [python, *paths]:
        for path in target.parents:
            try:
                st = path.stat()
            except OSError:
                continue
            if not (st.st_mode & 0o001) and st.st_uid != ids[0]:
                return f"{path} is not searchable by the sandbox user (uid {ids[0]})"
    if not os.access(python, os.X_OK):
        return f"{python} is not executable"
    return None
