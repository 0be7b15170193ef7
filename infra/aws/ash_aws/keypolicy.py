"""The stack key's policy, as data. Without a policy of its own a key gets AWS's default one (the account administers
it through IAM), which is not enough for the two services that use the key on the stack's behalf without IAM
permissions of their own: Auto Scaling, which launches the runners with encrypted root volumes, and CloudWatch, which
publishes alarms to the encrypted SNS topic."""

from __future__ import annotations

from typing import Any

Statement = dict[str, Any]

AUTO_SCALING_ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


def auto_scaling_role_arn(account: str) -> str:
    """The Auto Scaling service-linked role, which launches an Auto Scaling group's instances (the runners)."""
    return f"arn:aws:iam::{account}:{AUTO_SCALING_ROLE}"


def key_policy(*, account: str, runners: bool) -> dict[str, Any]:
    """In a key policy "Resource": "*" means this key. `runners`: the stack has an Auto Scaling group."""
    statements: list[Statement] = [
        {
            # AWS's default statement, kept: the account's IAM policies decide who else uses the key (the instance
            # roles' UseStackKey, the operator running `pulumi up`), and the key can never lock its account out.
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            # CloudWatch cannot use the AWS-managed alias/aws/sns key (its policy cannot be edited), so the alarm topic
            # is encrypted with this key and CloudWatch may encrypt what it publishes. What it may publish to is the
            # topic policy's business (this account's alarms only); the key is used for nothing else by this service.
            "Sid": "CloudWatchPublishesAlarms",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
        },
    ]
    if runners:
        # The two statements of "Required AWS KMS key policy for use with encrypted volumes" (EC2 Auto Scaling user
        # guide): the service-linked role has no access to customer-managed keys, so without them the group cannot
        # launch a runner (its root volume is encrypted with this key). Only with runners: KMS refuses a policy that
        # names a role which does not exist, and an account has this one once it has had an Auto Scaling group (or
        # `aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com`, docs/self-hosting/aws.md).
        role = auto_scaling_role_arn(account)
        statements += [
            {
                "Sid": "AutoScalingUsesTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": role},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
            },
            {
                "Sid": "AutoScalingAttachesPersistentResources",
                "Effect": "Allow",
                "Principal": {"AWS": role},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                # Grants for AWS resources only (the EBS volumes it launches), not to arbitrary principals.
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}},
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}
