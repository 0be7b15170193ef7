"""A cloud firewall per role. Hetzner's firewalls filter the public interface only (the private network is not
filtered), and admit nothing inbound that no rule names. So: the server admits SSH from the allowlist (the operator,
and `pulumi up`, which delivers the secrets over SSH) and nothing else: the load balancer reaches its API port over
the private network, and the internet reaches only the load balancer's 80 and 443. The runners and the database
admit nothing on their public interface: the runner port and PostgreSQL are reached over the private network, and
`pulumi up` reaches them over SSH through the server (delivery.py). Outbound is open (no outbound rule): packages,
the model API, Object Storage."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud


@dataclass
class FirewallArgs:
    ssh_allowed_cidrs: list[str]
    labels: dict[str, str]


class Firewall(pulumi.ComponentResource):
    def __init__(self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:hetzner:Firewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.server = hcloud.Firewall(
            f"{name}-server",
            name=f"{name}-server",
            labels=args.labels,
            rules=[
                hcloud.FirewallRuleArgs(
                    direction="in",
                    protocol="tcp",
                    port="22",
                    source_ips=args.ssh_allowed_cidrs,
                    description="SSH from the allowlist (ash:sshAllowedCidrs)",
                )
            ],
            opts=child,
        )
        # No rule: nothing reaches a runner's or the database's public interface.
        self.runner = hcloud.Firewall(f"{name}-runner", name=f"{name}-runner", labels=args.labels, rules=[], opts=child)
        self.database = hcloud.Firewall(
            f"{name}-database", name=f"{name}-database", labels=args.labels, rules=[], opts=child
        )
        self.register_outputs({"server": self.server.id})
