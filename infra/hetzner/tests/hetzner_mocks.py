"""Pulumi mocks for infra/hetzner: the whole program runs under them (preview=False) and they record what it asked the
hcloud and command providers to create."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import rpc
from stack_support import ALL_SECRETS, INTERNAL_SECRET, SECRETS
from tests.support import pulumi_mocks
from tests.support.pulumi_mocks import RecordingMocks

SSH_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-private-key-0123456789\n-----END OPENSSH PRIVATE KEY-----"
HETZNER_SECRETS = {
    **SECRETS,
    "ash:sshPrivateKey": SSH_PRIVATE_KEY,
    "ash:s3AccessKey": "S3ACCESSKEY0123456789",
    "ash:s3SecretKey": "s3-secret-key-0123456789abcdef",
}
EVERY_SECRET = {**ALL_SECRETS, **HETZNER_SECRETS}
ALLOWLIST = ["203.0.113.7/32", "2001:db8::/48"]
CONFIG = {
    "ash:domain": "ash.example.com",
    "ash:dnsZone": "example.com",
    "ash:sshAllowedCidrs": json.dumps(ALLOWLIST),
    "ash:sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest ops@example.com",
    "ash:bucket": "ash-test-bucket",
    **HETZNER_SECRETS,
}
# Multi-machine mode: the server becomes the coordinator of two runners; and a floating IP.
# With runners: gVisor sandboxes (ash:runtime); the single-server stack keeps bubblewrap, the default.
RUNNER_CONFIG = {
    **CONFIG,
    "ash:runnerCount": "2",
    "ash:internalSecret": INTERNAL_SECRET,
    "ash:floatingIp": "true",
    "ash:runtime": "gvisor",
}
SERVER_IPV4 = "198.51.100.10"  # what the mock gives every server

# Where the secrets are meant to be: what pulumi-command sends over SSH (its stdin, its connection's key).
SECRET_STORES = ("command:remote:Command", "command:remote:CopyToRemote")

_ids: dict[str, int] = {}


class HetznerMocks(RecordingMocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        typ = args.typ
        if typ == "hcloud:index/server:Server":
            outputs.update(ipv4Address=SERVER_IPV4, ipv6Address="2001:db8:1::1")
        elif typ == "hcloud:index/loadBalancer:LoadBalancer":
            outputs.update(ipv4="198.51.100.5", ipv6="2001:db8:5::1")
        elif typ == "hcloud:index/floatingIp:FloatingIp":
            outputs["ipAddress"] = "198.51.100.99"
        self.record(args, outputs)
        # Hetzner's ids are numbers (other resources take them as such).
        number = _ids.setdefault(f"{typ}::{args.name}", 1000 + len(_ids))
        self.resources[-1].id = str(number)
        return str(number), outputs

    def one_of(self, types: tuple[str, ...], name: str) -> Any:
        (found,) = [r for r in self.resources if r.typ in types and r.name == name]
        return found

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def run_program(config: dict[str, str], build: Any) -> HetznerMocks:
    """Run `build(mocks)` under fresh mocks and config; returns the mocks holding every registered resource."""
    return pulumi_mocks.run_program(HetznerMocks(), "ash-hetzner", config, EVERY_SECRET, build)


def build_stack(mocks: HetznerMocks) -> Any:
    from ash_hetzner.config import load_config
    from ash_hetzner.stack import build

    stack = build(load_config())
    outputs = [stack.server.server.id, stack.load_balancer.https.id]
    outputs += [d.secrets.id for d in stack.deliveries.values()]
    if stack.runners is not None:
        outputs += [s.id for s in stack.runners.servers]
    return pulumi.Output.all(*outputs)


def server_id(mocks: HetznerMocks, name: str) -> str:
    return mocks.one("hcloud:index/server:Server", name).id


def user_data(mocks: HetznerMocks, server: str = "ash-test") -> str:
    script: str = mocks.one("hcloud:index/server:Server", server).inputs["userData"]
    return script


def revealed(value: Any) -> Any:
    """An input as the engine receives it, a Pulumi secret unwrapped (the mocks see the envelope)."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return value["value"]
    return value


def connection(mocks: HetznerMocks, name: str) -> dict[str, Any]:
    """Where a pulumi-command resource connects (its connection carries the SSH key, so it is a secret)."""
    value: dict[str, Any] = revealed(
        mocks.one_of(("command:remote:Command", "command:remote:CopyToRemote"), name).inputs["connection"]
    )
    return value
