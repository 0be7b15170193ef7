"""The host side of a sandbox's only ways out: the model gateway (always) and the egress proxy (when allowed)."""

from .gateway import Gateway, SandboxLink
from .model import PLACEHOLDER_KEY
from .network import NetworkPolicy, parse_network

__all__ = ["PLACEHOLDER_KEY", "Gateway", "NetworkPolicy", "SandboxLink", "parse_network"]
