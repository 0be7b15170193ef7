"""What every stack's boot script shares: its shell preamble, the instance's role and settings (`InstanceArgs`), the
settings the stack writes to /etc/ash/ash.env, the write-env.py command line, what the role's machine sets up and the
install step, put together by `render`. Each cloud's boot module adds how its machine fetches the release archive,
reads its secrets and ships its logs."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .config import Runtime
from .secrets import SECRET_VARIABLES

API_PORT = 4100  # the server's (and the coordinator's) API, behind the load balancer
RUNNER_PORT = 4200  # a runner's internal API, reached by the coordinator only

# "server": standalone, or ASH_MODE=coordinator when the stack has runners.
# "runner": ASH_MODE=runner, `ash runner` (systemd/ash-runner.service) registering with the coordinator's URL.
Role = Literal["server", "runner"]

# Fails loudly and names the line: a boot that stops half-way must say where, in the log the cloud's agent ships.
PREAMBLE = r"""set -Eeuo pipefail
exec > >(tee -a /var/log/ash-boot.log) 2>&1
trap 'echo "ash boot: FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
echo "ash boot: $(date -Is)"
"""

INSTALL = r"""
bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src @EXTRAS@ @UNIT@ @RUNTIME@
echo "ash boot: done $(date -Is)"
"""

# The data dir when the machine has no volume of its own (a runner, or a test container): it stays on the root disk.
LOCAL_DATA_DIR = "\nmkdir -p /var/lib/ash\n"


@dataclass(kw_only=True)
class InstanceArgs:
    """What every cloud's boot arguments (its `BootArgs`) have: the instance's role and its plain settings."""

    extras: str  # the package extras install-ash.sh installs (the cloud's snapshot store)
    snapshot_url: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    # "server": standalone, or ASH_MODE=coordinator when `coordinator` is set (the stack has runners).
    # "runner": ASH_MODE=runner, `ash runner` (systemd/ash-runner.service) registering with `server_url`.
    role: Role = "server"
    coordinator: bool = False
    server_url: str | None = None
    runtime: Runtime = "bwrap"
    # False outside the cloud (tests/distribution/test_cloud_boot.py boots the script in a container): what only the
    # cloud's own machine has (the data disk, the log agent) is left out.
    cloud_machine: bool = True


def script(header: str, body: str) -> str:
    """A boot script: the shebang, `header` (comment lines saying what the script is), the preamble, `body`, then the
    install step (its @EXTRAS@ and @UNIT@ filled by `fill`)."""
    return f"#!/bin/bash\n{header.strip()}\n{PREAMBLE}{body}{INSTALL}"


def instance_settings(
    *,
    role: Role,
    coordinator: bool,
    snapshot_url: str | None,
    server_url: str | None,
    cloud: Mapping[str, str],
    extra: Mapping[str, str],
    runtime: Runtime = "bwrap",
) -> dict[str, str]:
    """The plain settings of an instance's ash.env: its mode and ports, the data dir, the snapshot bucket, the
    coordinator's URL (a runner's), then `cloud`'s (the cloud's own, e.g. AWS_REGION) and `extra` (ash:settings)."""
    if role == "runner" and not server_url:
        raise ValueError("a runner needs the coordinator's URL")
    runner = role == "runner"
    return {
        **({"ASH_MODE": "runner"} if runner else {"ASH_MODE": "coordinator"} if coordinator else {}),
        # Behind the load balancer (the server) or the coordinator (a runner): the firewall admits nobody else.
        "ASH_HOST": "0.0.0.0",  # noqa: S104
        **({"ASH_RUNNER_PORT": str(RUNNER_PORT)} if runner else {"ASH_PORT": str(API_PORT)}),
        "ASH_DATA_DIR": "/var/lib/ash",
        "ASH_SANDBOX_RUNTIME": runtime,
        **cloud,
        **({"ASH_SNAPSHOT_URL": snapshot_url} if snapshot_url else {}),
        **({"ASH_SERVER_URL": server_url} if runner and server_url else {}),
        **extra,
    }


def write_env_command(
    backend: Sequence[str],
    settings: Mapping[str, str],
    *,
    runner_identity: tuple[str, str] | None,
    secret_names: Sequence[str],
) -> str:
    """The write-env.py command line: `backend` (the secret store and how to reach it), then every setting, then the
    runner's id and address (shell expressions, known at boot only), then the secrets by their stored names."""
    lines = [
        "python3 /opt/ash/src/infra/boot/write-env.py /etc/ash/ash.env " + backend[0],
        *(f"  {line}" for line in backend[1:]),
        *(f"  --setting {shlex.quote(f'{k}={v}')}" for k, v in settings.items()),
    ]
    if runner_identity is not None:
        runner_id, address = runner_identity
        lines += [f'  --setting "ASH_RUNNER_ID={runner_id}"', f'  --setting "ASH_RUNNER_ADVERTISE_HOST={address}"']
    lines += [f"  --secret {SECRET_VARIABLES[name]}={name}" for name in secret_names]
    return " \\\n".join(lines)


def fill(template: str, *, role: Role, extras: str, values: Mapping[str, str], runtime: Runtime = "bwrap") -> str:
    """`template` with its @TOKEN@s replaced: `values`' (already quoted where they are shell words), and the install
    step's extras, unit and runtime."""
    replacements = {
        **values,
        "@EXTRAS@": shlex.quote(extras),
        "@UNIT@": "ash-runner" if role == "runner" else "ash",
        "@RUNTIME@": runtime,
    }
    for token, value in replacements.items():
        template = template.replace(token, value)
    return template


def render(
    args: InstanceArgs,
    *,
    header: str,
    body: str,
    values: Mapping[str, str],
    log_agent: str,
    data_disk: str,
    runner_machine: str,
    backend: Sequence[str],
    runner_identity: tuple[str, str],
    cloud: Mapping[str, str],
    secret_names: Sequence[str],
) -> str:
    """A cloud's boot script: `header` and `body` (see `script`) with their @TOKEN@s filled: the cloud's `values`,
    then @LOG_AGENT@ (`log_agent`, on the cloud's own machine only), @MACHINE@ (a runner's `runner_machine`, the
    server's `data_disk`, or off the cloud a data dir on the root disk) and @WRITE_ENV@ (write-env.py with `backend`,
    the instance's settings and `cloud`'s, a runner's `runner_identity` and `secret_names`)."""
    runner = args.role == "runner"
    settings = instance_settings(
        role=args.role,
        coordinator=args.coordinator,
        snapshot_url=args.snapshot_url,
        server_url=args.server_url,
        cloud=cloud,
        extra=args.settings,
        runtime=args.runtime,
    )
    write_env = write_env_command(
        backend, settings, runner_identity=runner_identity if runner else None, secret_names=secret_names
    )
    if runner:
        machine = runner_machine
    elif args.cloud_machine:
        machine = data_disk
    else:
        machine = LOCAL_DATA_DIR
    filled = {
        **values,
        "@LOG_AGENT@": log_agent if args.cloud_machine else "",
        "@MACHINE@": machine,
        "@WRITE_ENV@": write_env,
    }
    return fill(script(header, body), role=args.role, extras=args.extras, values=filled, runtime=args.runtime)


def runner_machine(identity: str) -> str:
    """A runner's machine: `identity` sets its id and address (shell); its data dir stays on the root disk (its
    sessions move between runners through the snapshot bucket)."""
    return f"""
{identity.strip()}
mkdir -p /var/lib/ash
chmod 0711 /var/lib/ash
"""


def data_disk(find_device: str, *, wait_s: int, mount_source: str = "LABEL=ash-data") -> str:
    """Mount the server's data disk at the data dir, formatting it on first use. `find_device` sets `device` (shell);
    the disk may take up to `wait_s` seconds to appear after the instance boots. `mount_source` names the disk in
    /etc/fstab (`nofail`: a missing disk must not stop the machine from booting to where it can be repaired); a
    cloud whose device path carries the volume's id passes that path."""
    return f"""
{find_device.strip()}
for _ in $(seq {max(1, wait_s // 2)}); do [[ -e "$device" ]] && break; sleep 2; done
blkid "$device" >/dev/null || mkfs.ext4 -q -L ash-data "$device"
mkdir -p /var/lib/ash
grep -q '^{mount_source} ' /etc/fstab || echo '{mount_source} /var/lib/ash ext4 defaults,nofail 0 2' >>/etc/fstab
mountpoint -q /var/lib/ash || mount /var/lib/ash
chmod 0711 /var/lib/ash
"""
