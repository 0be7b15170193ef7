"""Who may switch users is decided by capability, not by uid (ADR 0008), and sandboxes are left no capability."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ash_server import capabilities
from ash_server.capabilities import CapabilitySets
from ash_server.sandbox import isolation, launcher
from ash_server.settings import Settings

# /proc/<pid>/status of a non-root server started by systemd/ash.service (uid 999, the six ambient capabilities).
NONROOT_SERVER = """Name:\tash
Uid:\t999\t999\t999\t999
Gid:\t999\t999\t999\t999
CapInh:\t00000000000000eb
CapPrm:\t00000000000000eb
CapEff:\t00000000000000eb
CapBnd:\t00000000000000eb
CapAmb:\t00000000000000eb
NoNewPrivs:\t1
"""


def test_parse_status_reads_every_set() -> None:
    caps = capabilities.parse_status(NONROOT_SERVER)
    assert caps == CapabilitySets(0xEB, 0xEB, 0xEB, 0xEB, 0xEB)
    assert caps.can_switch_users and caps.passes_on
    assert capabilities.names(caps.effective) == ["chown", "dac_override", "fowner", "kill", "setgid", "setuid"]
    assert capabilities.names(1 << 21) == ["cap_21"]


@pytest.mark.parametrize(
    ("effective", "expected"),
    [
        (0, False),
        (1 << capabilities.CAP_SETUID, False),
        (1 << capabilities.CAP_SETGID, False),
        ((1 << capabilities.CAP_SETUID) | (1 << capabilities.CAP_SETGID), True),
        (0x1FFFFFFFFFF, True),  # root
    ],
)
def test_switching_users_needs_both_setuid_and_setgid_effective(effective: int, expected: bool) -> None:
    assert CapabilitySets(effective=effective).can_switch_users is expected
    # Permitted but not effective does not count: the server could not use them without raising them first.
    assert not CapabilitySets(permitted=effective).can_switch_users


def test_unreadable_proc_means_no_capabilities(tmp_path: Path) -> None:
    assert capabilities.current(tmp_path / "missing") == CapabilitySets()


def with_capabilities(monkeypatch: pytest.MonkeyPatch, caps: CapabilitySets) -> None:
    monkeypatch.setattr(capabilities, "current", lambda status=capabilities.STATUS: caps)


def test_sandbox_ids_follow_capabilities_not_the_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 999)

    def ids() -> tuple[int, int] | None:
        return Settings(sandbox_uid=10001, sandbox_gid=10002).sandbox_ids  # read once per settings object

    with_capabilities(monkeypatch, capabilities.parse_status(NONROOT_SERVER))
    assert ids() == (10001, 10002)
    assert Settings().sandbox_ids == (65534, 65534)
    with_capabilities(monkeypatch, CapabilitySets(effective=1 << capabilities.CAP_SETUID))
    assert ids() is None
    with_capabilities(monkeypatch, CapabilitySets())  # a developer's own user
    assert ids() is None


def test_root_switches_even_without_the_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandboxes never run as root: without CAP_SETUID the switch fails (and the server says why at start)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with_capabilities(monkeypatch, CapabilitySets())
    assert Settings(sandbox_uid=10001).sandbox_ids == (10001, 10001)


def test_the_switch_to_the_sandbox_user_clears_every_inherited_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = launcher.drop_privileges((65534, 65534))
    assert argv[0] == "setpriv" and argv[-1] == "--"
    for option in ("--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"):
        assert option in argv
    assert "--inh-caps=-all" in argv and "--ambient-caps=-all" in argv


def test_a_server_that_cannot_switch_users_still_passes_on_no_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    with_capabilities(monkeypatch, CapabilitySets())
    assert launcher.drop_privileges(None) == []
    kill_only = 1 << capabilities.CAP_KILL
    with_capabilities(monkeypatch, CapabilitySets(kill_only, kill_only, kill_only, kill_only, kill_only))
    assert launcher.drop_privileges(None) == [
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--no-new-privs",
        "--",
    ]


def test_a_non_root_server_that_switches_users_needs_the_whole_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 999)
    settings = Settings()
    with_capabilities(monkeypatch, capabilities.parse_status(NONROOT_SERVER))
    isolation.check_user_switch(settings)  # the six: fine
    switch_only = capabilities.SWITCH_USERS | (1 << capabilities.CAP_CHOWN)
    with_capabilities(monkeypatch, CapabilitySets(effective=switch_only, ambient=switch_only))
    with pytest.raises(isolation.IsolationUnavailable) as refused:
        isolation.check_user_switch(settings)
    assert "lacks CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL" in refused.value.message
    with_capabilities(monkeypatch, CapabilitySets())  # cannot switch: sandboxes run as the server's user
    isolation.check_user_switch(Settings())  # (a new server: the ids are read once per process's settings)
