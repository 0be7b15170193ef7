"""CloudWatch: the log group the agent ships to, and alarms (unhealthy targets, 5xx, CPU, database) that notify an SNS
topic; a failed system status check recovers the server onto healthy hardware. The topic is encrypted with the stack
key (whose policy lets CloudWatch use it, keypolicy.py) and its policy lets this account's alarms publish."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


def topic_policy(*, topic_arn: str, region: str, account: str, alarm_prefix: str) -> dict[str, Any]:
    """CloudWatch may publish to the topic for the stack's own alarms (`<alarm_prefix>*` in this account), nothing
    else: the service principal alone would let any account's alarms post here."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_prefix}*"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }


@dataclass
class MonitoringArgs:
    region: pulumi.Input[str]
    account: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]  # the stack key: CloudWatch cannot use alias/aws/sns
    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    instance_id: pulumi.Input[str]
    database_id: pulumi.Input[str]
    alarm_email: str | None = None
    log_retention_days: int = 30


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.log_group = aws.cloudwatch.LogGroup(
            name, name=f"/ash/{name}", retention_in_days=args.log_retention_days, opts=child
        )
        # Not alias/aws/sns: its policy does not let CloudWatch use it and cannot be changed, so every notification
        # failed with KMS AccessDenied and none arrived.
        self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=args.kms_key_arn, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-alarms",
            arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, args.region, args.account).apply(
                lambda a: json.dumps(topic_policy(topic_arn=a[0], region=a[1], account=a[2], alarm_prefix=f"{name}-"))
            ),
            opts=child,
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email", topic=self.topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
            )
        lb = {"LoadBalancer": args.alb_arn_suffix}
        target = {"LoadBalancer": args.alb_arn_suffix, "TargetGroup": args.target_group_arn_suffix}
        instance = {"InstanceId": args.instance_id}
        database = {"DBInstanceIdentifier": args.database_id}
        notify = [self.topic.arn]

        def alarm(
            key: str,
            metric: str,
            namespace: str,
            dimensions: dict[str, pulumi.Input[str]],
            *,
            statistic: str,
            threshold: float,
            comparison: str = "GreaterThanOrEqualToThreshold",
            periods: int = 2,
            period: int = 300,
            actions: list[pulumi.Input[str]] | None = None,
            description: str,
        ) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key}",
                alarm_description=description,
                namespace=namespace,
                metric_name=metric,
                dimensions=dimensions,
                statistic=statistic,
                period=period,
                evaluation_periods=periods,
                threshold=threshold,
                comparison_operator=comparison,
                treat_missing_data="notBreaching",
                alarm_actions=actions or notify,
                ok_actions=notify,
                opts=child,
            )

        self.alarms = {
            "unhealthy": alarm(
                "unhealthy-hosts",
                "UnHealthyHostCount",
                "AWS/ApplicationELB",
                target,
                statistic="Maximum",
                threshold=1,
                period=60,
                description="The Ash server fails its /health check behind the load balancer",
            ),
            "target-5xx": alarm(
                "target-5xx",
                "HTTPCode_Target_5XX_Count",
                "AWS/ApplicationELB",
                lb,
                statistic="Sum",
                threshold=10,
                periods=1,
                description="The Ash server answered 10+ 5xx in 5 minutes",
            ),
            "lb-5xx": alarm(
                "lb-5xx",
                "HTTPCode_ELB_5XX_Count",
                "AWS/ApplicationELB",
                lb,
                statistic="Sum",
                threshold=10,
                periods=1,
                description="The load balancer answered 10+ 5xx in 5 minutes (no healthy server?)",
            ),
            "cpu": alarm(
                "cpu",
                "CPUUtilization",
                "AWS/EC2",
                instance,
                statistic="Average",
                threshold=80,
                periods=3,
                description="The Ash server's CPU has been above 80% for 15 minutes",
            ),
            "recover": alarm(
                "recover",
                "StatusCheckFailed_System",
                "AWS/EC2",
                instance,
                statistic="Maximum",
                threshold=1,
                period=60,
                actions=[pulumi.Output.concat("arn:aws:automate:", args.region, ":ec2:recover")],
                description="Hardware failure: EC2 moves the server to healthy hardware (the data volume follows)",
            ),
            "db-cpu": alarm(
                "db-cpu",
                "CPUUtilization",
                "AWS/RDS",
                database,
                statistic="Average",
                threshold=80,
                periods=3,
                description="The database's CPU has been above 80% for 15 minutes",
            ),
            "db-storage": alarm(
                "db-storage",
                "FreeStorageSpace",
                "AWS/RDS",
                database,
                statistic="Minimum",
                threshold=2 * 1024**3,
                comparison="LessThanThreshold",
                description="The database has less than 2 GiB free",
            ),
        }
        self.register_outputs({"logGroup": self.log_group.name, "alarmTopic": self.topic.arn})
