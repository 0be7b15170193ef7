"""Reading the cloud boot scripts the Pulumi programs render (infra/aws and infra/gcp tests share it)."""

from __future__ import annotations

import itertools
import shlex

WRITE_ENV = "python3 /opt/ash/src/infra/boot/write-env.py /etc/ash/ash.env "


def env_args(script: str) -> tuple[dict[str, str], dict[str, str]]:
    """What the script has infra/boot/write-env.py write to /etc/ash/ash.env: its settings (NAME -> value, as the
    shell passes them, `$var` unexpanded) and its secrets (variable -> the secret it is read from)."""
    start = script.index(WRITE_ENV)
    command = []
    for line in script[start:].splitlines():
        command.append(line.removesuffix("\\"))
        if not line.endswith("\\"):
            break
    words = shlex.split(" ".join(command))
    found: dict[str, dict[str, str]] = {"--setting": {}, "--secret": {}}
    for option, value in itertools.pairwise(words):
        if option in found:
            key, _, rest = value.partition("=")
            found[option][key] = rest
    return found["--setting"], found["--secret"]
