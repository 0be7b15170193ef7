"""How a sandbox process is started. One launcher per isolation mode, all behind `Launcher`.

`ProcessLauncher` (isolation "none") is the baseline: allowlisted environment, its own process group, no
capabilities, and a uid of its own when the server can switch users (capabilities.py). `BwrapLauncher` (bwrap.py)
wraps the same `LaunchSpec` in namespaces, `GvisorLauncher` (gvisor.py) in a gVisor container. Each puts the
process under its limits first (`LaunchSpec.limits_argv`, see limits/).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .. import capabilities
from ..paths import chown_tree
from .environment import DEFAULT_PATH
from .limits import Confinement


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    sandbox_id: str
    argv: list[str]
    env: dict[str, str]
    workspace: Path
    home: Path
    sandbox_dir: Path
    ids: tuple[int, int] | None = None
    # The runtime the bridge needs (interpreter, virtualenv, the bridge package), read-only in the sandbox.
    extra_ro_paths: list[Path] = field(default_factory=list)
    # "none" | "allowlist" | "full" (sandbox/policy.py); only a namespaced launcher can take the network away.
    network: str = "none"
    # Runs first: puts the process in its cgroup / under its rlimits, then execs the rest (limits/).
    limits_argv: list[str] = field(default_factory=list)
    # The same limits for a bridge forked from the template (forking.py), which no argv prefix runs for.
    confinement: Confinement | None = None
    file_size_bytes: int | None = None
    # The launcher's name (bwrap, gvisor, none): the one that runs commands in it and cleans up after it.
    runtime: str = ""


class SandboxProcess(Protocol):
    """What a sandbox's process is to the server: its pid (its process group's), its output, its end."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    async def wait(self) -> int: ...


class Launcher(Protocol):
    name: str
    # How bridges start: "exec" (a new interpreter), or "fork" from the bridge template (forking.py).
    bridge_start: str

    async def launch(self, spec: LaunchSpec) -> SandboxProcess: ...

    def exec_argv(self, spec: LaunchSpec, sandbox_pid: int, command: list[str]) -> list[str]:
        """The argv that runs `command` inside the live sandbox started from `spec` (whose process is
        `sandbox_pid`), under the same user, limits and isolation."""
        ...

    async def release(self, spec: LaunchSpec) -> None:
        """After the sandbox's processes ended: remove what the launcher keeps for it besides its folder."""
        ...

    async def sweep(self) -> int:
        """At start: remove what a previous server of this data dir left behind; how many sandboxes."""
        ...


class ProcessLauncher:
    """No namespaces: the sandbox is a process tree of its own under its own (non-root) uid."""

    name = "none"
    bridge_start = "exec"

    async def launch(self, spec: LaunchSpec) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *spec.limits_argv,
            *drop_privileges(spec.ids),
            *spec.argv,
            env=spec.env,
            cwd=spec.workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # A process group of its own, so stopping the sandbox kills everything the agent started in it.
            start_new_session=True,
            close_fds=True,
        )

    def exec_argv(self, spec: LaunchSpec, sandbox_pid: int, command: list[str]) -> list[str]:
        return [*spec.limits_argv, *drop_privileges(spec.ids), *command]

    async def release(self, spec: LaunchSpec) -> None:
        return None

    async def sweep(self) -> int:
        return 0


def drop_privileges(ids: tuple[int, int] | None) -> list[str]:
    """The argv prefix that switches to the sandbox user for good (no supplementary groups, no setuid gains) and
    leaves it no capability.

    setpriv rather than Popen(user=...): it works under every event loop (uvloop has no user/group support)
    and leaves no Python code running between fork and exec. Switching from root to another uid clears the
    permitted, effective and ambient sets, but switching from a non-root server that holds ambient capabilities
    (ADR 0008) keeps them all, through execve too: `--inh-caps=-all --ambient-caps=-all` clears them, so the
    sandbox's programs start with none (and bubblewrap, which refuses to run with unexpected capabilities, runs).
    """
    clear_caps = ["--inh-caps=-all", "--ambient-caps=-all"]
    if ids is None:
        if not capabilities.current().passes_on:
            return []
        # A server that cannot switch users but holds ambient capabilities (CAP_KILL alone, say) keeps its uid
        # for its sandboxes, and none of its capabilities.
        return ["setpriv", *clear_caps, "--no-new-privs", "--"]
    uid, gid = ids
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *clear_caps, "--no-new-privs", "--"]


def probe_spec(base: Path, ids: tuple[int, int] | None, runtime: Sequence[Path], sandbox_id: str) -> LaunchSpec:
    """A throwaway sandbox under `base` (a temporary folder) that runs the bridge's interpreter and exits: what a
    runtime's probe starts to see that it works here. Makes its folders, owned by the sandbox user."""
    os.chmod(base, 0o755)
    for name in ("workspace", "home", "sandbox"):
        (base / name).mkdir()
    chown_tree(base, ids)
    return LaunchSpec(
        sandbox_id=sandbox_id,
        argv=[sys.executable, "-I", "-S", "-c", "pass"],
        env={"PATH": DEFAULT_PATH},
        workspace=base / "workspace",
        home=base / "home",
        sandbox_dir=base / "sandbox",
        ids=ids,
        extra_ro_paths=list(runtime),
    )
