"""The sandbox runtimes this server can run, each proved by really starting a sandbox.

The server's default runtime (ASH_SANDBOX_RUNTIME) is probed before the server starts, and it refuses to start
without it. The others are probed in the background, so a server start does not wait for a runtime nobody may ask
for; a sandbox that asks for one waits for its probe. /health reports each with why it does not work, if it does
not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import Invalid
from .launcher import Launcher

log = logging.getLogger(__name__)


class RuntimeUnavailable(Invalid):
    """A sandbox runtime that this server cannot run (400: the request asks for what the host lacks)."""


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    # None while its probe is still running.
    available: bool | None
    reason: str | None = None


# A probe: why the runtime cannot run here, or None.
Probe = Callable[[], Awaitable[str | None]]


class Runtimes:
    def __init__(self, default: Launcher) -> None:
        self.default = default
        self._launchers: dict[str, Launcher] = {default.name: default}
        self._problems: dict[str, str] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        # Every launcher made, usable or not yet known: the crash sweep cleans up after each.
        self._made: list[Launcher] = [default]

    def refuse(self, name: str, reason: str) -> None:
        self._problems[name] = reason

    def probe_later(self, launcher: Launcher, probe: Probe) -> None:
        """`launcher` serves its runtime once `probe` finds nothing wrong."""
        name = launcher.name
        self._made.append(launcher)

        async def run() -> None:
            try:
                problem = await probe()
            except Exception as exc:  # a probe that breaks means the runtime is not usable, not a dead server
                log.exception("probing the %s runtime failed", name)
                problem = f"its probe failed: {exc}"
            if problem is not None:
                self._problems[name] = problem
                log.info("sandbox runtime %s is not available: %s", name, problem)
            else:
                self._launchers[name] = launcher

        self._probes[name] = asyncio.create_task(run(), name=f"probe-{name}")

    async def launcher(self, name: str | None) -> Launcher:
        """The launcher of runtime `name` (None: the default); RuntimeUnavailable with the reason."""
        if name is None or name == self.default.name:
            return self.default
        probe = self._probes.get(name)
        if probe is not None:
            await asyncio.shield(probe)
        if name in self._launchers:
            return self._launchers[name]
        reason = self._problems.get(name, "this server does not offer it")
        raise RuntimeUnavailable(f"sandbox runtime {name!r} cannot run on this server: {reason}", runtime=name)

    def status(self) -> dict[str, RuntimeStatus]:
        found = {name: RuntimeStatus(True) for name in self._launchers}
        for name, reason in self._problems.items():
            found.setdefault(name, RuntimeStatus(False, reason))
        for name in self._probes:
            found.setdefault(name, RuntimeStatus(None, "being probed"))
        return dict(sorted(found.items()))

    def launchers(self) -> list[Launcher]:
        """The usable ones."""
        return list(self._launchers.values())

    def made(self) -> list[Launcher]:
        """Every one made, usable or not (yet)."""
        return list(self._made)

    async def close(self) -> None:
        for task in self._probes.values():
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
