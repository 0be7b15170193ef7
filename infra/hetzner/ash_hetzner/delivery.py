"""What `pulumi up` puts on a machine over SSH, with pulumi-command: the release archive, then the secrets, written
to a root-only file in one rename. Why SSH: Hetzner Cloud has no secret store and no machine identity (no instance
role, no service account) a machine could read one with; Object Storage keys reach every bucket of the project. Any
secret a machine fetched by itself would need a credential in its user data, which Hetzner serves to every process on
the machine and shows in its API and console. Over SSH, a secret goes from the Pulumi state (encrypted) to a 0600 file
and nowhere else; a changed secret is written again and the machine's boot runs again to apply it.

The server is reached at its public address (its firewall admits SSH from ash:sshAllowedCidrs, where `pulumi up`
runs); the runners and the database, which admit nothing publicly, through the server as an SSH jump host."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_hcloud as hcloud

# The dial is retried while the machine boots (sshd takes ~30 s after the server is created).
DIAL_ATTEMPTS = 40


@dataclass(frozen=True)
class Target:
    """How to reach a machine: `host` directly, or through `jump` (the server's public address)."""

    host: pulumi.Input[str]
    private_key: pulumi.Input[str]
    jump: pulumi.Input[str] | None = None

    def connection(self) -> command.remote.ConnectionArgs:
        proxy = (
            command.remote.ProxyConnectionArgs(host=self.jump, user="root", private_key=self.private_key)
            if self.jump is not None
            else None
        )
        return command.remote.ConnectionArgs(
            host=self.host, user="root", private_key=self.private_key, proxy=proxy, dial_error_limit=DIAL_ATTEMPTS
        )


def write_file(path: str, *, then: str = "") -> str:
    """A shell command that writes its stdin to `path` (mode 0600, in one rename), then runs `then`."""
    folder = str(Path(path).parent)
    quoted, partial = shlex.quote(path), shlex.quote(f"{path}.partial")
    steps = [f"install -d -m 0700 {shlex.quote(folder)}", "umask 077", f"cat >{partial}", f"mv {partial} {quoted}"]
    return " && ".join(steps + ([then] if then else []))


def secrets_json(values: dict[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """The secrets file's text (a JSON object by secret name), itself a Pulumi secret."""
    names = sorted(values)
    return pulumi.Output.secret(
        pulumi.Output.all(*(values[n] for n in names)).apply(lambda v: json.dumps(dict(zip(names, v, strict=True))))
    )


@dataclass
class AshDeliveryArgs:
    target: Target
    release: Path  # the zip (release.py)
    release_path: str  # where the boot waits for it
    secrets: dict[str, pulumi.Input[str]]  # by name (ash_infra.secrets.SECRET_VARIABLES)
    secrets_path: str
    boot_copy: str  # the boot script, run again when the secrets change


class AshDelivery(pulumi.ComponentResource):
    """The release and the secrets of an Ash machine (the server or a runner)."""

    def __init__(self, name: str, args: AshDeliveryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:hetzner:Delivery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        connection = args.target.connection()
        self.release = command.remote.CopyToRemote(
            f"{name}-release",
            connection=connection,
            source=pulumi.FileAsset(str(args.release)),
            remote_path=args.release_path,
            opts=child,
        )
        # While cloud-init runs, the first boot is waiting for this file. After it (a changed secret, or a first boot
        # that gave up waiting), the boot runs again: a new ash.env, Ash (re)started.
        boot = shlex.quote(args.boot_copy)
        waiting = "cloud-init status 2>/dev/null | grep -q running"
        rerun = f"if [ -e {boot} ] && ! {waiting}; then bash {boot} >/dev/null; fi"
        self.secrets = command.remote.Command(
            f"{name}-secrets",
            connection=connection,
            create=write_file(args.secrets_path, then=rerun),
            stdin=secrets_json(args.secrets),
            logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )
        self.register_outputs({})


def sql_password(password: str) -> str:
    """The statement that sets the `ash` role's password. standard_conforming_strings (PostgreSQL's default): only a
    quote needs doubling."""
    return "ALTER ROLE ash PASSWORD '" + password.replace("'", "''") + "';\n"


@dataclass
class DatabaseDeliveryArgs:
    target: Target
    password: pulumi.Input[str]
    backup_env: str  # where the dump job reads the bucket's keys
    access_key: pulumi.Input[str]
    secret_key: pulumi.Input[str]


class DatabaseDelivery(pulumi.ComponentResource):
    """The database server's secrets: the `ash` role's password (set with psql once the boot made the role) and the
    bucket's keys for the nightly dump."""

    def __init__(self, name: str, args: DatabaseDeliveryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:hetzner:DatabaseDelivery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        connection = args.target.connection()
        # SQL on stdin, never on a command line.
        sql = pulumi.Output.secret(args.password).apply(sql_password)
        self.password = command.remote.Command(
            f"{name}-password",
            connection=connection,
            create="cloud-init status --wait >/dev/null || true; runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1",
            stdin=sql,
            logging=command.remote.Logging.STDERR,
            opts=child,
        )
        # Secret even if the keys were not (any secret makes the whole Output one).
        env = pulumi.Output.all(pulumi.Output.secret(args.access_key), args.secret_key).apply(
            lambda k: f"AWS_ACCESS_KEY_ID={shlex.quote(k[0])}\nAWS_SECRET_ACCESS_KEY={shlex.quote(k[1])}\n"
        )
        self.backup = command.remote.Command(
            f"{name}-backup-keys",
            connection=connection,
            create=write_file(args.backup_env),
            stdin=env,
            logging=command.remote.Logging.STDERR,
            opts=child,
        )
        self.register_outputs({})


def floating_ip_on_machine(name: str, target: Target, floating_ip: hcloud.FloatingIp) -> command.remote.Command:
    """Hetzner routes a floating IP to the server; the server must also claim it (Hetzner's guide: an address on
    eth0), now and at every boot."""
    script = floating_ip.ip_address.apply(
        lambda ip: (
            "cat >/etc/network/interfaces.d/60-ash-floating-ip <<'CONF'\n"
            f"auto eth0:1\niface eth0:1 inet static\n    address {ip}\n    netmask 32\nCONF\n"
            f"ip address replace {ip}/32 dev eth0"
        )
    )
    return command.remote.Command(f"{name}-floating-ip", connection=target.connection(), create=script)
