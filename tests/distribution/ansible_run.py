"""Running ansible/site.yml for real against podman hosts, through the containers.podman.podman connection."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.distribution.podman import podman_env
from tests.support.ansible import ANSIBLE, BIN, ansible_env

EXAMPLE_INVENTORY = ANSIBLE / "inventory" / "example"
CONNECTION = "containers.podman.podman"


def example_settings() -> dict[str, Any]:
    """The example inventory's group variables, as an operator would start from them."""
    loaded = yaml.safe_load((EXAMPLE_INVENTORY / "group_vars" / "all" / "main.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def podman_connection(hosts: list[str], work: Path) -> Path:
    """A second inventory source that only says how to reach the hosts (their containers, by name); the first one
    stays as the operator has it. Host variables, so the playbook's `delegate_to: localhost` stays local."""
    path = work / "connection.yml"
    path.write_text(json.dumps({"all": {"hosts": {h: {"ansible_connection": CONNECTION} for h in hosts}}}))
    return path


def playbook(inventories: list[Path], extra_vars: dict[str, Any], work: Path, timeout: float = 1500) -> str:
    """`ansible-playbook -i INVENTORY... site.yml` with `extra_vars` (a file, as `-e @file`); its output, or an
    AssertionError with the tail of it."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    variables = work / "extra-vars.json"
    variables.write_text(json.dumps(extra_vars))
    variables.chmod(0o600)
    env = ansible_env(work, podman_env())
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), *(f"-i{i}" for i in inventories), "-e", f"@{variables}", "site.yml"],
        env=env,
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"ansible-playbook exited {result.returncode}:\n{output[-12000:]}"
    return output


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: {host: {ok, changed, failed, ...}}."""
    tail = output[output.rindex("PLAY RECAP") :]
    hosts: dict[str, dict[str, int]] = {}
    for host, counts in re.findall(r"^(\S+)\s*:\s*(ok=\d+.*)$", tail, flags=re.MULTILINE):
        hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    assert hosts, tail
    return hosts


def changed_tasks(output: str) -> list[str]:
    """The names of the tasks that reported `changed` (for a useful message when a second run is not idle)."""
    names, current = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith("changed:"):
            names.append(f"{current} {line}")
    return names
