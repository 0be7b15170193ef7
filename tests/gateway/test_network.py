"""Network policies from an agent's config, and how the allowlist matches destinations."""

from __future__ import annotations

import ipaddress

import pytest

from ash_server.errors import Invalid
from ash_server.gateway.network import is_public, parse_network


def test_modes() -> None:
    assert parse_network(None).mode == "none"
    assert parse_network("none").mode == "none"
    assert parse_network("full").mode == "full"
    assert parse_network({"allow": []}).mode == "none"
    policy = parse_network({"allow": ["example.com", "*.pypi.org", "localhost:8080", "10.0.0.5:5432", "[::1]:9"]})
    assert policy.mode == "allowlist"
    assert policy.to_json() == {"allow": ["example.com", "*.pypi.org", "localhost:8080", "10.0.0.5:5432", "[::1]:9"]}


@pytest.mark.parametrize(
    "raw",
    [
        "all",
        42,
        {"allow": "example.com"},
        {"allow": [""]},
        {"allow": ["exa mple.com"]},
        {"allow": ["a.com:0"]},
        {"allow": ["a.com:http"]},
        {"allow": ["a.com"], "deny": []},
        {"allow": ["-bad.com"]},
        {"allow": [None]},
    ],
)
def test_bad_policies_are_refused(raw: object) -> None:
    with pytest.raises(Invalid):
        parse_network(raw)


def test_matching() -> None:
    policy = parse_network({"allow": ["Example.COM", "*.pypi.org", "localhost:8080", "10.0.0.5:5432"]})
    # Without a port an entry allows 80 and 443 only.
    assert policy.entry_for("example.com", 443) is not None
    assert policy.entry_for("EXAMPLE.com.", 80) is not None
    assert policy.entry_for("example.com", 22) is None
    assert policy.entry_for("www.example.com", 443) is None
    # A wildcard covers subdomains, not the bare domain.
    assert policy.entry_for("files.pypi.org", 443) is not None
    assert policy.entry_for("a.b.pypi.org", 443) is not None
    assert policy.entry_for("pypi.org", 443) is None
    assert policy.entry_for("evilpypi.org", 443) is None
    # With a port, that port only.
    assert policy.entry_for("localhost", 8080) is not None
    assert policy.entry_for("localhost", 8081) is None
    assert policy.entry_for("10.0.0.5", 5432) is not None
    assert policy.entry_for("not a host", 443) is None
    # Literal entries (IPs, localhost) may reach non-public addresses; names may not.
    literal = {str(e): e.literal for e in policy.allow}
    assert literal == {"example.com": False, "*.pypi.org": False, "localhost:8080": True, "10.0.0.5:5432": True}
    assert parse_network("full").entry_for("example.com", 443) is None  # full network has no proxy at all


def test_public_addresses() -> None:
    for private in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "0.0.0.0",
        "224.0.0.1",
    ):
        assert not is_public(ipaddress.ip_address(private)), private
    for public in ("1.1.1.1", "2606:4700:4700::1111"):
        assert is_public(ipaddress.ip_address(public)), public
