"""Which launcher runs sandboxes (ASH_SANDBOX_ISOLATION), decided once at start by really starting one."""

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
from .launcher import Launcher, ProcessLauncher


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


async def select_launcher(settings: Settings) -> Launcher:
    check_user_switch(settings)
    if settings.sandbox_isolation == "none":
        return ProcessLauncher()
    launcher = BwrapLauncher()
    problem = await launcher.probe(settings.sandbox_ids, runtime_paths())
    entry = forkable_entry(settings.bridge_entry)
    if problem is None and settings.bridge_start == "fork" and entry is not None:
        template = BridgeTemplate(settings.data_dir / "run" / "template.sock", settings.sandbox_ids)
        await template.start()
        return ForkingBwrapLauncher(template, source=entry or None)
    if problem is not None:
        raise IsolationUnavailable(
            f"bubblewrap cannot start sandboxes here ({problem.strip()[:500]}). Install bubblewrap 0.8+ and "
            "allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0), or set ASH_SANDBOX_ISOLATION=none to run sandboxes without "
            "namespaces (see docs/security.md for what that gives up)"
        )
    return launcher
