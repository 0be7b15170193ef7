"""The private network: one cloud subnet in the location's network zone, and the fixed addresses the machines take
on it (so the load balancer, the runners and the server's database URL name each other without a lookup, and a
replaced machine comes back at the same address). Hetzner's cloud firewalls filter public interfaces only: traffic
on this network is not filtered by them, which is why the runner port and PostgreSQL are reached here and nowhere
else (firewall.py admits neither on a public interface)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud


@dataclass(frozen=True)
class Addresses:
    load_balancer: str
    server: str
    database: str
    runners: list[str]


def addresses(subnet: str, runners: int) -> Addresses:
    """.5 the load balancer, .10 the server, .20 the database, .100 on the runners."""
    hosts = ipaddress.ip_network(subnet)
    base = hosts.network_address
    if hosts.num_addresses < 100 + runners + 2:
        raise ValueError(f"the subnet {subnet} is too small for {runners} runners")
    return Addresses(
        load_balancer=str(base + 5),
        server=str(base + 10),
        database=str(base + 20),
        runners=[str(base + 100 + i) for i in range(runners)],
    )


def numeric(resource: pulumi.CustomResource) -> pulumi.Output[int]:
    """A Hetzner resource's id as the number other resources take."""
    return resource.id.apply(int)


@dataclass
class NetworkArgs:
    cidr: str
    subnet_cidr: str
    network_zone: str
    labels: dict[str, str]


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:hetzner:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = hcloud.Network(name, name=name, ip_range=args.cidr, labels=args.labels, opts=child)
        self.subnet = hcloud.NetworkSubnet(
            name,
            network_id=numeric(self.network),
            type="cloud",
            network_zone=args.network_zone,
            ip_range=args.subnet_cidr,
            opts=child,
        )
        self.register_outputs({"network": self.network.id})
