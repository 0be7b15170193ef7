"""The public entry: an ALB in the public subnets with an ACM certificate, an HTTPS listener (TLS 1.2+) that forwards
to the server's API port, and an HTTP listener that only redirects to HTTPS."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from ash_infra.boot import API_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass
class LoadBalancerArgs:
    domain: str
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    hosted_zone_id: str | None = None


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        certificate = aws.acm.Certificate(name, domain_name=args.domain, validation_method="DNS", opts=child)
        option = certificate.domain_validation_options[0]
        if args.hosted_zone_id:
            record = aws.route53.Record(
                f"{name}-validation",
                zone_id=args.hosted_zone_id,
                name=option.resource_record_name,
                type=option.resource_record_type,
                records=[option.resource_record_value],
                ttl=300,
                allow_overwrite=True,
                opts=child,
            )
            validation = aws.acm.CertificateValidation(
                name, certificate_arn=certificate.arn, validation_record_fqdns=[record.fqdn], opts=child
            )
        else:
            pulumi.Output.all(option.resource_record_name, option.resource_record_value).apply(
                lambda r: pulumi.log.warn(f"create the DNS record {r[0]} CNAME {r[1]} to validate the certificate")
            )
            validation = aws.acm.CertificateValidation(name, certificate_arn=certificate.arn, opts=child)

        self.alb = aws.lb.LoadBalancer(
            name,
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            # SSE streams send a keepalive every 15 s (ASH_SSE_KEEPALIVE_MS); a turn may stay quiet for longer.
            idle_timeout=300,
            opts=child,
        )
        self.target_group = aws.lb.TargetGroup(
            name,
            port=API_PORT,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path="/health", port=str(API_PORT), matcher="200", interval=15, healthy_threshold=2
            ),
            opts=child,
        )
        self.https = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=self.alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=validation.certificate_arn,
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.target_group.arn)],
            opts=child,
        )
        self.http = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        protocol="HTTPS", port="443", status_code="HTTP_301"
                    ),
                )
            ],
            opts=child,
        )
        if args.hosted_zone_id:
            aws.route53.Record(
                name,
                zone_id=args.hosted_zone_id,
                name=args.domain,
                type="A",
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=self.alb.dns_name, zone_id=self.alb.zone_id, evaluate_target_health=True
                    )
                ],
                opts=child,
            )
        self.register_outputs({"dnsName": self.alb.dns_name})
