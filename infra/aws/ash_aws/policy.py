"""The instances' IAM policy, as data: only their parameters, their key, their bucket prefixes and their log group.
The server and the runners each have their own role; a runner's names the parameters it reads one by one."""

from __future__ import annotations

from typing import Any

Statement = dict[str, Any]


def instance_policy(
    *,
    parameter_arn_prefix: str,
    parameter_names: list[str] | None = None,
    key_arn: str,
    bucket_arn: str,
    log_group_arn: str,
    metrics_namespace: str,
    region: str,
    bedrock: bool,
) -> dict[str, Any]:
    statements: list[Statement] = [
        {
            "Sid": "ReadOwnParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            # Every parameter of the stack (the server), or only the named ones (runners).
            "Resource": f"{parameter_arn_prefix}/*"
            if parameter_names is None
            else [f"{parameter_arn_prefix}/{name}" for name in parameter_names],
        },
        {
            "Sid": "UseStackKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": key_arn,
        },
        {
            "Sid": "ReadReleaseArchive",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"{bucket_arn}/artifacts/*",
        },
        {
            "Sid": "ReadWriteSnapshots",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            "Resource": f"{bucket_arn}/snapshots/*",
        },
        {
            # s3:ListBucket is also what HeadBucket needs (the server checks the bucket at start), and HeadBucket has
            # no prefix: "IfExists", or the check is refused and the server does not start. Listings stay limited to
            # snapshots/ whenever they name a prefix.
            "Sid": "ListSnapshots",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": {"StringLikeIfExists": {"s3:prefix": ["snapshots/*"]}},
        },
        {
            "Sid": "ShipLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, f"{log_group_arn}:*"],
        },
        {
            # PutMetricData has no resource to scope to; the namespace condition does it.
            "Sid": "PutOwnMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": metrics_namespace}},
        },
    ]
    if bedrock:
        statements.append(
            {
                "Sid": "InvokeClaudeOnBedrock",
                "Effect": "Allow",
                "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                "Resource": [
                    "arn:aws:bedrock:*::foundation-model/anthropic.*",
                    f"arn:aws:bedrock:{region}:*:inference-profile/*anthropic.*",
                ],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
