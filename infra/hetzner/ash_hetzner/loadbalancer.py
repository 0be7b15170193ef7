"""The public entry: a load balancer with a managed (Let's Encrypt) certificate for the domain, HTTPS on 443 to the
server's API port and HTTP on 80 redirecting to it, a health check on /health, the server as a target over the
private network (its public interface admits none of this); and, with ash:dnsZone, the domain's A and AAAA records
in Hetzner DNS, where the managed certificate is validated."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud
from ash_infra.boot import API_PORT

from .network import numeric


@dataclass
class LoadBalancerArgs:
    domain: str
    location: str
    network: hcloud.Network
    subnet: hcloud.NetworkSubnet
    ip: str  # its address on the private network
    server: hcloud.Server
    labels: dict[str, str]
    dns_zone: str | None = None
    load_balancer_type: str = "lb11"


def record_name(domain: str, zone: str) -> str:
    """The domain's name inside its zone: `@` for the apex."""
    if domain == zone:
        return "@"
    if not domain.endswith(f".{zone}"):
        raise ValueError(f"ash:domain {domain} is not in ash:dnsZone {zone}")
    return domain.removesuffix(f".{zone}")


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:hetzner:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.certificate = hcloud.ManagedCertificate(
            name, name=name, domain_names=[args.domain], labels=args.labels, opts=child
        )
        self.lb = hcloud.LoadBalancer(
            name,
            name=name,
            load_balancer_type=args.load_balancer_type,
            location=args.location,
            labels=args.labels,
            opts=child,
        )
        attachment = hcloud.LoadBalancerNetwork(
            name,
            load_balancer_id=numeric(self.lb),
            network_id=numeric(args.network),
            ip=args.ip,
            enable_public_interface=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.subnet]),
        )
        self.target = hcloud.LoadBalancerTarget(
            name,
            load_balancer_id=numeric(self.lb),
            type="server",
            server_id=numeric(args.server),
            use_private_ip=True,  # the server's public interface admits nothing but SSH
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
        self.https = hcloud.LoadBalancerService(
            f"{name}-https",
            load_balancer_id=self.lb.id,
            protocol="https",
            listen_port=443,
            destination_port=API_PORT,
            http=hcloud.LoadBalancerServiceHttpArgs(
                certificates=[numeric(self.certificate)],
                redirect_http=True,  # port 80 answers with a redirect to https, and serves nothing else
            ),
            health_check=hcloud.LoadBalancerServiceHealthCheckArgs(
                protocol="http",
                port=API_PORT,
                interval=15,
                timeout=10,
                retries=3,
                http=hcloud.LoadBalancerServiceHealthCheckHttpArgs(path="/health", status_codes=["200"]),
            ),
            opts=child,
        )
        if args.dns_zone:
            label = record_name(args.domain, args.dns_zone)
            for kind, address in (("A", self.lb.ipv4), ("AAAA", self.lb.ipv6)):
                hcloud.ZoneRrset(
                    f"{name}-{kind.lower()}",
                    zone=args.dns_zone,
                    name=label,
                    type=kind,
                    ttl=300,
                    records=[hcloud.ZoneRrsetRecordArgs(value=address)],
                    opts=child,
                )
        self.register_outputs({"ipv4": self.lb.ipv4, "ipv6": self.lb.ipv6})
