"""An agent's network policy (`config.network`) and the allowlist the egress proxy enforces.

    "none"                                   no network at all (the default)
    {"allow": ["example.com", "*.pypi.org"]} only these destinations, through the egress proxy
    "full"                                   the host's network, unfiltered

What a tenant may ask for is capped by the operator (`NetworkCeilings`, from ASH_NETWORK_CEILINGS): `none` for
every tenant not named, `public` (allowlists of public destinations) for the operator's own by default; `private`
(literal loopback and private addresses in allowlists) and `full` only where the operator grants them. The cap is
checked when an agent's configuration is set (403) and again at every sandbox start (a lowered ceiling applies to
agents configured before).

An allowlist entry is a host name, a `*.`-wildcard (subdomains only, not the bare domain), an IPv4 literal or a
bracketed IPv6 literal, each with an optional `:port`. Without a port an entry allows ports 80 and 443 only.

Destinations are resolved by the proxy, on the host, once; the connection goes to the address that was checked.
A name that resolves to a loopback, private, link-local (cloud metadata), multicast or reserved address is refused
unless its entry names that host literally (an IP literal or `localhost`): a public name in the allowlist cannot
be pointed at the host's own services by whoever controls its DNS. So `localhost:8080` or `10.0.0.5:5432` must be
spelled out to be reachable, which is also how the tests exercise the proxy without internet access.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any

from ..errors import Forbidden, Invalid
from ..states import NetworkCeiling, NetworkMode

DEFAULT_PORTS = frozenset({80, 443})
MAX_ENTRIES = 256
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
LITERAL_HOSTS = frozenset({"localhost"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AllowEntry:
    host: str  # lowercased; for a wildcard, the suffix without "*."
    wildcard: bool
    port: int | None
    literal: bool  # an IP literal or localhost: may resolve to a non-public address
    # Named by the operator, not an agent (a dependency build's registries): may resolve to a private address (a
    # company mirror), never to loopback, link-local (the cloud metadata endpoint) or multicast.
    trusted: bool = False

    def matches(self, host: str, port: int) -> bool:
        if self.port is None:
            if port not in DEFAULT_PORTS:
                return False
        elif port != self.port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __str__(self) -> str:
        host = ("*." if self.wildcard else "") + (f"[{self.host}]" if ":" in self.host else self.host)
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    mode: NetworkMode
    allow: tuple[AllowEntry, ...] = ()

    def entry_for(self, host: str, port: int) -> AllowEntry | None:
        """The allowlist entry that admits host:port, or None."""
        if self.mode != NetworkMode.ALLOWLIST:
            return None
        name = normalize_host(host)
        if name is None:
            return None
        for entry in self.allow:
            if entry.matches(name, port):
                return entry
        return None

    def ceiling_needed(self) -> NetworkCeiling:
        """The least ceiling that admits this policy."""
        if self.mode == NetworkMode.NONE:
            return NetworkCeiling.NONE
        if self.mode == NetworkMode.FULL:
            return NetworkCeiling.FULL
        if any(entry.literal and not _public_literal(entry.host) for entry in self.allow):
            return NetworkCeiling.PRIVATE
        return NetworkCeiling.PUBLIC

    def to_json(self) -> str | dict[str, list[str]]:
        if self.mode == NetworkMode.ALLOWLIST:
            return {"allow": [str(e) for e in self.allow]}
        return self.mode


NO_NETWORK = NetworkPolicy(NetworkMode.NONE)


def normalize_host(raw: str) -> str | None:
    """Lowercase, without a trailing dot or IPv6 brackets; None if it is not a host name or an IP literal."""
    host = raw.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host if _HOST_RE.match(host) and len(host) <= 253 else None


def is_public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def may_reach(entry: AllowEntry, address: IPAddress) -> bool:
    """Whether the proxy may connect to `address`, resolved from the name of `entry`."""
    if entry.literal or is_public(address):
        return True
    return entry.trusted and not (
        address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified
    )


def operator_policy(hosts: list[str]) -> NetworkPolicy:
    """An allowlist the operator wrote (ASH_DEPENDENCY_REGISTRIES): its names are trusted (`AllowEntry.trusted`)."""
    entries = tuple(replace(parse_entry(h), trusted=True) for h in hosts)
    return NetworkPolicy(NetworkMode.ALLOWLIST, entries) if entries else NO_NETWORK


def _split_port(raw: str) -> tuple[str, int | None]:
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError("junk after ]")
        return host, int(rest[1:]) if rest else None
    if raw.count(":") == 1:
        host, _, port = raw.partition(":")
        return host, int(port)
    return raw, None


def parse_entry(raw: Any) -> AllowEntry:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(f"network allowlist entries are host names, got {raw!r}")
    text = raw.strip().lower()
    wildcard = text.startswith("*.")
    if wildcard:
        text = text[2:]
    try:
        host_part, port = _split_port(text)
    except ValueError as exc:
        raise Invalid(f"invalid port in network allowlist entry {raw!r}") from exc
    if port is not None and not 1 <= port <= 65535:
        raise Invalid(f"invalid port in network allowlist entry {raw!r}")
    host = normalize_host(host_part)
    if host is None or (wildcard and not _HOST_RE.match(host)):
        raise Invalid(f"invalid host in network allowlist entry {raw!r}")
    literal = not wildcard and (host in LITERAL_HOSTS or _is_ip(host))
    return AllowEntry(host=host, wildcard=wildcard, port=port, literal=literal)


def _public_literal(host: str) -> bool:
    try:
        return is_public(ipaddress.ip_address(host))
    except ValueError:
        return False  # localhost


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_network(raw: Any) -> NetworkPolicy:
    """An agent's `config.network`, validated (Invalid with the reason otherwise). Missing means none."""
    if raw is None or raw == "none":
        return NO_NETWORK
    if raw == "full":
        return NetworkPolicy(NetworkMode.FULL)
    if isinstance(raw, dict) and set(raw) == {"allow"} and isinstance(raw["allow"], list):
        entries = raw["allow"]
        if len(entries) > MAX_ENTRIES:
            raise Invalid(f"a network allowlist holds at most {MAX_ENTRIES} entries")
        allow = tuple(dict.fromkeys(parse_entry(e) for e in entries))
        return NetworkPolicy(NetworkMode.ALLOWLIST, allow) if allow else NO_NETWORK
    raise Invalid('network must be "none", "full" or {"allow": ["example.com", "*.example.org:8443", ...]}')


class NetworkCeilings:
    """The operator's caps per tenant (Settings.network_ceiling_map); `*` names every tenant not named, and a
    tenant named by neither gets none."""

    def __init__(self, ceilings: dict[str, NetworkCeiling]) -> None:
        self._by_tenant = dict(ceilings)
        self._others = self._by_tenant.pop("*", NetworkCeiling.NONE)

    def of(self, tenant_id: str) -> NetworkCeiling:
        return self._by_tenant.get(tenant_id, self._others)

    def check(self, tenant_id: str, policy: NetworkPolicy) -> None:
        """Forbidden (403) when the policy asks for more than the tenant's ceiling."""
        needed, ceiling = policy.ceiling_needed(), self.of(tenant_id)
        if needed.rank > ceiling.rank:
            raise Forbidden(
                f"this network policy needs the {needed.value!r} ceiling; the operator allows this tenant "
                f"{ceiling.value!r} (ASH_NETWORK_CEILINGS)",
                needed=needed.value,
                ceiling=ceiling.value,
            )
