"""Security groups: the internet reaches the load balancer only; the load balancer reaches the server's API port;
the server reaches the database (and, in multi-machine mode, the runners' port, while the runners reach the database
and the server's API port, where they register and heartbeat). Rules are separate resources so that groups can name
each other."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from ash_infra.boot import API_PORT, RUNNER_PORT

POSTGRES_PORT = 5432


@dataclass
class FirewallArgs:
    vpc_id: pulumi.Input[str]
    allowed_cidrs: list[str]
    runners: bool = False  # multi-machine mode: runners register and heartbeat on the server's API port


class Firewall(pulumi.ComponentResource):
    def __init__(self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:Firewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"{name}-{role}",
                vpc_id=args.vpc_id,
                description=description,
                tags={"Name": f"{name}-{role}"},
                opts=child,
            )

        self.lb = group("lb", "Ash load balancer: HTTPS and the HTTP redirect from the allowed networks")
        self.server = group("server", "Ash server: the API port from the load balancer only")
        self.database = group("db", "Ash PostgreSQL: from the Ash instances only")
        self.runner = group("runner", "Ash runners: the runner port from the server only")

        for port in (443, 80):
            for i, cidr in enumerate(args.allowed_cidrs):
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-lb-{port}-{i}",
                    security_group_id=self.lb.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr if ":" not in cidr else None,
                    cidr_ipv6=cidr if ":" in cidr else None,
                    opts=child,
                )
        self._allow(f"{name}-lb-to-server", self.lb, self.server, API_PORT, child)
        self._allow(f"{name}-server-to-db", self.server, self.database, POSTGRES_PORT, child)
        self._allow(f"{name}-runner-to-db", self.runner, self.database, POSTGRES_PORT, child)
        self._allow(f"{name}-server-to-runner", self.server, self.runner, RUNNER_PORT, child)
        self.runner_health: aws.ec2.SecurityGroup | None = None
        if args.runners:
            self._allow(f"{name}-runner-to-server", self.runner, self.server, API_PORT, child)
            # The runners' health check (an internal NLB, compute.py): it reaches the runner port; nothing reaches it.
            self.runner_health = group("runner-health", "Ash runners' health check: to the runner port, from nobody")
            self._allow(f"{name}-health-to-runner", self.runner_health, self.runner, RUNNER_PORT, child)
        # Instances reach the model API, PyPI, Debian and AWS APIs (through the NAT gateway): HTTPS and HTTP out.
        for role, sg in (("server", self.server), ("runner", self.runner)):
            for port in (443, 80):
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{role}-out-{port}",
                    security_group_id=sg.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4="0.0.0.0/0",
                    opts=child,
                )
        self.register_outputs({"lb": self.lb.id, "server": self.server.id, "database": self.database.id})

    @staticmethod
    def _allow(
        name: str,
        source: aws.ec2.SecurityGroup,
        target: aws.ec2.SecurityGroup,
        port: int,
        opts: pulumi.ResourceOptions,
    ) -> None:
        """`target` admits `source` on `port`, and `source` may send there: each group's rule names the other."""
        rules = (
            (aws.vpc.SecurityGroupIngressRule, name, target, source),
            (aws.vpc.SecurityGroupEgressRule, f"{name}-out", source, target),
        )
        for rule, rule_name, group, peer in rules:
            rule(
                rule_name,
                security_group_id=group.id,
                referenced_security_group_id=peer.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                opts=opts,
            )
