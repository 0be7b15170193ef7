"""The stack's KMS key and its secrets in SSM Parameter Store (SecureString, under /ash/<stack>/). Instances read them
at boot by name with their role; no value is ever in user data."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class SecretsArgs:
    prefix: str  # /ash/<stack>
    key_policy: pulumi.Input[str]  # JSON, from keypolicy.key_policy()


class Secrets(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:Secrets", name, None, opts)
        self._name = name
        self.prefix = args.prefix
        # One customer-managed key for the stack's parameters, bucket, disks and database: one key to audit.
        self.key = aws.kms.Key(
            name,
            description=f"Ash {name}: SSM parameters, S3 snapshots, EBS and RDS",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=args.key_policy,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(
            name, name=f"alias/{name}", target_key_id=self.key.key_id, opts=pulumi.ResourceOptions(parent=self)
        )
        self.parameters: dict[str, aws.ssm.Parameter] = {}
        self.register_outputs({"keyArn": self.key.arn, "prefix": args.prefix})

    def put(self, key: str, value: pulumi.Input[str]) -> aws.ssm.Parameter:
        """A SecureString parameter `<prefix>/<key>`, encrypted with the stack key."""
        parameter = aws.ssm.Parameter(
            f"{self._name}-{key}",
            name=f"{self.prefix}/{key}",
            type="SecureString",
            key_id=self.key.arn,
            value=pulumi.Output.secret(value),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.parameters[key] = parameter
        return parameter
