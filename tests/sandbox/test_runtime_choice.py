"""Which runtime a sandbox gets: its agent's config `runtime`, its tenant's (ASH_TENANT_RUNTIMES), the server's."""

from __future__ import annotations

import pytest

from ash_server.sandbox.runtime_names import RuntimeChoiceError, choose, parse_tenant_runtimes
from ash_server.settings import Settings


def test_tenant_runtimes_parse_and_refuse_unknown_runtimes() -> None:
    assert parse_tenant_runtimes(" acme=gvisor , *=bwrap,") == {"acme": "gvisor", "*": "bwrap"}
    assert parse_tenant_runtimes("") == {}
    with pytest.raises(ValueError, match="one of bwrap, gvisor"):
        parse_tenant_runtimes("acme=docker")
    with pytest.raises(ValueError, match="not tenant=runtime"):
        parse_tenant_runtimes("gvisor")


def test_settings_refuse_a_bad_tenant_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASH_TENANT_RUNTIMES", "acme=kata")
    with pytest.raises(ValueError, match="acme=kata"):
        Settings()


def test_an_agent_chooses_unless_its_tenant_is_held_to_one() -> None:
    held = {"strangers": "gvisor"}
    assert choose({}, "default", held) is None  # the server's default
    assert choose({"runtime": "gvisor"}, "default", held) == "gvisor"
    assert choose({}, "strangers", held) == "gvisor"
    assert choose({"runtime": "gvisor"}, "strangers", held) == "gvisor"
    with pytest.raises(RuntimeChoiceError, match="under gvisor only"):
        choose({"runtime": "bwrap"}, "strangers", held)
    with pytest.raises(RuntimeChoiceError, match="one of bwrap, gvisor"):
        choose({"runtime": "runc"}, "default", held)
    assert choose({}, "anyone", {"*": "gvisor"}) == "gvisor"
