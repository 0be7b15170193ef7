"""The secrets an instance reads at boot (from SSM Parameter Store or Secret Manager, by these names under the
stack's prefix) and the variable each becomes in /etc/ash/ash.env (infra/boot/write-env.py writes it)."""

from __future__ import annotations

import pulumi

SECRET_VARIABLES = {
    "api-key": "ASH_API_KEY",
    "anthropic-api-key": "ANTHROPIC_API_KEY",
    "credential-key": "ASH_CREDENTIAL_KEY",
    "database-url": "ASH_DATABASE_URL",
    "internal-secret": "ASH_INTERNAL_SECRET",
}


def stack_secrets(
    *,
    api_key: pulumi.Input[str],
    database_url: pulumi.Input[str],
    anthropic_api_key: pulumi.Input[str] | None,
    credential_key: pulumi.Input[str] | None,
    internal_secret: pulumi.Input[str] | None,
    runners: bool,
) -> dict[str, pulumi.Input[str]]:
    """The secrets a stack stores for its instances, by the names above (only those the stack has)."""
    values: dict[str, pulumi.Input[str]] = {"api-key": api_key, "database-url": database_url}
    if anthropic_api_key is not None:
        values["anthropic-api-key"] = anthropic_api_key
    if credential_key is not None:
        values["credential-key"] = credential_key
    if runners:
        if internal_secret is None:
            raise ValueError("runners need config.internal_secret")  # load_config() requires it
        values["internal-secret"] = internal_secret
    return values
