"""Which launchers run sandboxes (ASH_SANDBOX_ISOLATION, ASH_SANDBOX_RUNTIME), decided at start by really starting
one of each."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ash_bridge import protocol

from .. import capabilities
from ..errors import AshError
from ..settings import Settings
from .bwrap import BwrapLauncher
from .forking import BridgeTemplate, ForkingBwrapLauncher, forkable_entry
from .gvisor import GvisorLauncher
from .launcher import Launcher, ProcessLauncher
from .runtime_names import NAMES, Runtime
from .runtimes import Runtimes


class IsolationUnavailable(AshError):
    """Sandboxes cannot start as configured: bubblewrap cannot run here and the configuration does not allow
    running without it, or the server lacks capabilities it needs to run them as another user."""


def runtime_paths() -> list[Path]:
    """What the bridge needs of the server's installation: the interpreter, the virtualenv, the bridge package."""
    interpreter = Path(sys.executable).resolve()
    bridge_root = Path(protocol.__file__).resolve().parent.parent  # the checkout's bridge/ in editable installs
    return [Path(sys.prefix), Path(sys.base_prefix), interpreter.parent, bridge_root]


def check_user_switch(settings: Settings) -> None:
    """A non-root server that switches sandboxes to their own uid needs the other capabilities of the measured set
    too; without them it would fail on its first session folder, or fail to stop a sandbox."""
    ids = settings.sandbox_ids
    if ids is None or os.geteuid() == 0:
        return  # root: ADR 0007's bounding set; None: sandboxes run as the server's own user
    missing = capabilities.missing_to_manage_sandboxes(capabilities.current())
    if missing:
        wanted = " ".join(f"CAP_{name.upper()}" for name in missing)
        raise IsolationUnavailable(
            f"the server (uid {os.geteuid()}) can switch sandboxes to uid {ids[0]} but lacks {wanted}, which it "
            "needs to manage their folders and stop them. Grant CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE "
            "CAP_FOWNER CAP_KILL (AmbientCapabilities= in systemd/ash.service), or none of them to run sandboxes "
            "as the server's own user (docs/decisions/0008-non-root-server.md)"
        )


async def select_runtimes(settings: Settings, limits: str) -> Runtimes:
    """The default runtime, probed now (IsolationUnavailable if it cannot run), and the other one probed in the
    background. `limits` is the limits backend's name: gVisor needs a cgroup to hold its sentry."""
    check_user_switch(settings)
    if settings.sandbox_isolation == "none":
        runtimes = Runtimes(ProcessLauncher())
        for name in NAMES:
            runtimes.refuse(name, "the server runs sandboxes without isolation (ASH_SANDBOX_ISOLATION=none)")
        return runtimes
    if settings.sandbox_runtime == Runtime.GVISOR.value:
        launcher: Launcher | str = await gvisor_launcher(settings, limits)
        if isinstance(launcher, str):
            raise IsolationUnavailable(
                f"gVisor cannot start sandboxes here ({launcher.strip()[:500]}). Install runsc "
                "(scripts/install.sh --runtime gvisor), or set ASH_SANDBOX_RUNTIME=bwrap"
            )
        runtimes = Runtimes(launcher)
        bwrap = BwrapLauncher()
        runtimes.probe_later(bwrap, lambda: bwrap.probe(settings.sandbox_ids, runtime_paths()))
        return runtimes
    launcher = await bwrap_launcher(settings, fork=settings.bridge_start == "fork")
    if isinstance(launcher, str):
        raise IsolationUnavailable(
            f"bubblewrap cannot start sandboxes here ({launcher.strip()[:500]}). Install bubblewrap 0.8+ and "
            "allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0), or set ASH_SANDBOX_ISOLATION=none to run sandboxes without "
            "namespaces (see docs/security.md for what that gives up)"
        )
    runtimes = Runtimes(launcher)
    gvisor = GvisorLauncher(settings.data_dir / "run" / "gvisor")
    runtimes.probe_later(gvisor, lambda: gvisor_problem(gvisor, settings, limits))
    return runtimes


async def bwrap_launcher(settings: Settings, *, fork: bool) -> Launcher | str:
    """bubblewrap's launcher (forking bridges when `fork` and the entry allows), or why it cannot run."""
    launcher = BwrapLauncher()
    problem = await launcher.probe(settings.sandbox_ids, runtime_paths())
    if problem is not None:
        return problem
    entry = forkable_entry(settings.bridge_entry)
    if fork and entry is not None:
        template = BridgeTemplate(settings.data_dir / "run" / "template.sock", settings.sandbox_ids)
        await template.start()
        return ForkingBwrapLauncher(template, source=entry or None)
    return launcher


async def gvisor_launcher(settings: Settings, limits: str) -> Launcher | str:
    """gVisor's launcher, or why it cannot run."""
    launcher = GvisorLauncher(settings.data_dir / "run" / "gvisor")
    problem = await gvisor_problem(launcher, settings, limits)
    return launcher if problem is None else problem


async def gvisor_problem(launcher: GvisorLauncher, settings: Settings, limits: str) -> str | None:
    if limits == "rlimit":
        return (
            "gVisor sandboxes need a cgroup limits backend (the host gives this server none, so limits fall back to "
            "rlimits, which cannot hold runsc's processes)"
        )
    return await launcher.probe(settings.sandbox_ids, runtime_paths())
