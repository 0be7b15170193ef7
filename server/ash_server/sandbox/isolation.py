"""Which launcher runs sandboxes (ASH_SANDBOX_ISOLATION), decided once at start by really starting one."""

from __future__ import annotations

import sys
from pathlib import Path

from ash_bridge import protocol

from ..errors import AshError
from ..settings import Settings
from .bwrap import BwrapLauncher
from .launcher import Launcher, ProcessLauncher


class IsolationUnavailable(AshError):
    """bubblewrap cannot run here and the configuration does not allow running without it."""


def runtime_paths() -> list[Path]:
    """What the bridge needs of the server's installation: the interpreter, the virtualenv, the bridge package."""
    interpreter = Path(sys.executable).resolve()
    bridge_root = Path(protocol.__file__).resolve().parent.parent  # the checkout's bridge/ in editable installs
    return [Path(sys.prefix), Path(sys.base_prefix), interpreter.parent, bridge_root]


async def select_launcher(settings: Settings) -> Launcher:
    if settings.sandbox_isolation == "none":
        return ProcessLauncher()
    launcher = BwrapLauncher()
    problem = await launcher.probe(settings.sandbox_ids, runtime_paths())
    if problem is not None:
        raise IsolationUnavailable(
            f"bubblewrap cannot start sandboxes here ({problem.strip()[:500]}). Install bubblewrap 0.8+ and "
            "allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0), or set ASH_SANDBOX_ISOLATION=none to run sandboxes without "
            "namespaces (see docs/security.md for what that gives up)"
        )
    return launcher
