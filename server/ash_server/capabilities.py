"""The Linux capabilities the server holds, read from /proc/self/status (ADR 0008).

What the server may do with privileges is decided by capability, not by uid: a non-root server started with
ambient CAP_SETUID and CAP_SETGID (`AmbientCapabilities=` in systemd/ash.service, `setpriv --ambient-caps` in the
container's entrypoint) switches sandboxes to their own uid exactly as root does, and a root server whose bounding
set lacks them cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")

# include/uapi/linux/capability.h: the ones the server uses.
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_FOWNER = 3
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
NAMES = {
    CAP_CHOWN: "chown",
    CAP_DAC_OVERRIDE: "dac_override",
    CAP_FOWNER: "fowner",
    CAP_KILL: "kill",
    CAP_SETGID: "setgid",
    CAP_SETUID: "setuid",
}
SWITCH_USERS = (1 << CAP_SETUID) | (1 << CAP_SETGID)
# What a server whose sandboxes run as another uid needs besides SWITCH_USERS (measured, ADR 0008): give session
# folders to the sandbox user (CHOWN), write, chmod and remove in the folders and sockets that user owns
# (DAC_OVERRIDE, FOWNER), stop its processes (KILL).
MANAGE_SANDBOXES = (1 << CAP_CHOWN) | (1 << CAP_DAC_OVERRIDE) | (1 << CAP_FOWNER) | (1 << CAP_KILL)


@dataclass(frozen=True, slots=True)
class CapabilitySets:
    """The five capability sets of a process, as bit masks (bit n = capability n)."""

    inheritable: int = 0
    permitted: int = 0
    effective: int = 0
    bounding: int = 0
    ambient: int = 0

    @property
    def can_switch_users(self) -> bool:
        """setresuid/setresgid/setgroups to any id: CAP_SETUID and CAP_SETGID, both effective."""
        return self.effective & SWITCH_USERS == SWITCH_USERS

    @property
    def passes_on(self) -> bool:
        """Whether a program this process executes could start with capabilities: ambient ones survive execve for
        a non-root uid, inheritable ones meet file capabilities. bubblewrap refuses to run with either
        ("Unexpected capabilities but not setuid")."""
        return bool(self.ambient or self.inheritable)


def parse_status(text: str) -> CapabilitySets:
    """The Cap* lines of a /proc/<pid>/status."""
    fields = {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            fields[name] = int(value.strip(), 16)
    return CapabilitySets(
        inheritable=fields["CapInh"],
        permitted=fields["CapPrm"],
        effective=fields["CapEff"],
        bounding=fields["CapBnd"],
        ambient=fields["CapAmb"],
    )


def missing_to_manage_sandboxes(caps: CapabilitySets) -> list[str]:
    """The capabilities of MANAGE_SANDBOXES that `caps` does not hold effective, by name."""
    return names(MANAGE_SANDBOXES & ~caps.effective)


def current(status: Path = STATUS) -> CapabilitySets:
    """This process's capabilities; none if /proc cannot be read."""
    try:
        return parse_status(status.read_text())
    except OSError:
        return CapabilitySets()


def names(mask: int) -> list[str]:
    """`chown`, `setuid`...: the capabilities in `mask` by their setpriv/capabilities(7) names (cap_<n> for ones
    this module does not name)."""
    return [NAMES.get(bit, f"cap_{bit}") for bit in range(64) if mask >> bit & 1]
