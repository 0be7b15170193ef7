"""The secrets an instance reads at boot (from SSM Parameter Store or Secret Manager, by these names under the
stack's prefix, or from the root-only file infra/hetzner writes over SSH) and the variable each becomes in
/etc/ash/ash.env (infra/boot/write-env.py writes it)."""

from __future__ import annotations

import pulumi

from .config import CommonConfig

SECRET_VARIABLES = {
    "api-key": "ASH_API_KEY",
    "anthropic-api-key": "ANTHROPIC_API_KEY",
    "credential-key": "ASH_CREDENTIAL_KEY",
    "database-url": "ASH_DATABASE_URL",
    "internal-secret": "ASH_INTERNAL_SECRET",
    # Hetzner Object Storage (infra/hetzner): an S3 key pair, where AWS and GCP give the instance an identity instead.
    "s3-access-key": "AWS_ACCESS_KEY_ID",
    "s3-secret-key": "AWS_SECRET_ACCESS_KEY",
}


def stack_secrets(
    config: CommonConfig, *, database_url: pulumi.Input[str], runners: bool
) -> dict[str, pulumi.Input[str]]:
    """The secrets a stack stores for its instances, by the names above (only those the stack has)."""
    values: dict[str, pulumi.Input[str]] = {"api-key": config.api_key, "database-url": database_url}
    if config.anthropic_api_key is not None:
        values["anthropic-api-key"] = config.anthropic_api_key
    if config.credential_key is not None:
        values["credential-key"] = config.credential_key
    if runners:
        if config.internal_secret is None:
            raise ValueError("runners need config.internal_secret")  # load_config() requires it
        values["internal-secret"] = config.internal_secret
    return values
