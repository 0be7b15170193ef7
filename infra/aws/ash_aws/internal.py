"""The coordinator's private DNS name, for multi-machine mode: a Route 53 private hosted zone of the VPC with one
record, coordinator.<stack>.internal -> the server's private IP. Runners register with
http://coordinator.<stack>.internal:4100; the name follows the server when an upgrade replaces the instance (a new
private IP), so the runners' launch template does not change with it. Nothing outside the VPC resolves it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from ash_infra.boot import API_PORT


@dataclass
class CoordinatorNameArgs:
    vpc_id: pulumi.Input[str]
    private_ip: pulumi.Input[str]


class CoordinatorName(pulumi.ComponentResource):
    def __init__(self, name: str, args: CoordinatorNameArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:CoordinatorName", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.domain = f"{name}.internal"
        self.fqdn = f"coordinator.{self.domain}"
        self.zone = aws.route53.Zone(
            f"{name}-internal",
            name=self.domain,
            comment=f"Ash {name}: private names of the VPC (multi-machine mode)",
            vpcs=[aws.route53.ZoneVpcArgs(vpc_id=args.vpc_id)],
            opts=child,
        )
        # A short TTL: after the server is replaced, runners reach the new one within a minute.
        self.record = aws.route53.Record(
            f"{name}-coordinator",
            zone_id=self.zone.zone_id,
            name=self.fqdn,
            type="A",
            ttl=60,
            records=[args.private_ip],
            opts=child,
        )
        # Plain HTTP inside the VPC: every request between coordinator and runners is HMAC-signed (no mutual TLS here).
        self.url = f"http://{self.fqdn}:{API_PORT}"
        self.register_outputs({"url": self.url})
