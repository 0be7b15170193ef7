"""The machines: the server (standalone, or the coordinator with runners) with its data volume and an optional
floating IP, the runners, and the database server with its volume. Each is a Debian server on the private network at
its fixed address, behind its role's firewall, with cloud-init user data and the stack's SSH key. A new release or
new settings are new user data, which Hetzner can only apply to a new server: the old one is shut down (a runner
drains, the server unmounts its volume) and deleted first, so its fixed address and volume are free for the new one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud

from .network import numeric


@dataclass(kw_only=True)
class MachineArgs:
    """What every machine takes: where it runs, what it is, how it is reached."""

    server_type: str
    image: str
    location: str
    network: hcloud.Network
    subnet: hcloud.NetworkSubnet
    firewall: hcloud.Firewall
    ssh_key: hcloud.SshKey
    labels: dict[str, str]


def machine(
    name: str, args: MachineArgs, *, ip: str, user_data: pulumi.Input[str], role: str, opts: pulumi.ResourceOptions
) -> hcloud.Server:
    return hcloud.Server(
        name,
        name=name,
        server_type=args.server_type,
        image=args.image,
        location=args.location,
        ssh_keys=[args.ssh_key.id],
        firewall_ids=[numeric(args.firewall)],
        networks=[hcloud.ServerNetworkArgs(network_id=numeric(args.network), ip=ip)],
        # A public IPv4 for outbound traffic (packages, the model API, Object Storage); the firewall admits nothing
        # on it but the server's SSH from the allowlist.
        public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
        user_data=user_data,
        shutdown_before_deletion=True,
        labels={**args.labels, "ash-role": role},
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(delete_before_replace=True, depends_on=[args.subnet]),
        ),
    )


def volume(
    name: str, *, size_gb: int, location: str, labels: dict[str, str], protect: bool, opts: pulumi.ResourceOptions
) -> hcloud.Volume:
    # Formatted by the machine's boot (with its label), not by Hetzner: the boot knows whether it holds data.
    return hcloud.Volume(
        name, name=name, size=size_gb, location=location, delete_protection=protect, labels=labels, opts=opts
    )


def attach(name: str, disk: hcloud.Volume, server: hcloud.Server, opts: pulumi.ResourceOptions) -> None:
    # The boot mounts the volume by its id (boot.py): Hetzner's automount would mount it elsewhere.
    hcloud.VolumeAttachment(
        name,
        volume_id=numeric(disk),
        server_id=numeric(server),
        automount=False,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
    )


@dataclass(kw_only=True)
class ServerArgs(MachineArgs):
    ip: str
    data_volume_gb: int = 100
    protect_volume: bool = True
    floating_ip: bool = False


class Server(pulumi.ComponentResource):
    """`user_data` is a function of the data volume's id: the boot mounts that volume."""

    def __init__(
        self,
        name: str,
        args: ServerArgs,
        user_data: Callable[[pulumi.Output[str]], pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ash:hetzner:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.volume = volume(
            f"{name}-data",
            size_gb=args.data_volume_gb,
            location=args.location,
            labels=args.labels,
            protect=args.protect_volume,
            opts=child,
        )
        self.server = machine(name, args, ip=args.ip, user_data=user_data(self.volume.id), role="server", opts=child)
        attach(f"{name}-data", self.volume, self.server, child)
        self.floating_ip: hcloud.FloatingIp | None = None
        if args.floating_ip:
            # Stays when the server is replaced: a stable address for SSH and outbound allowlists.
            self.floating_ip = hcloud.FloatingIp(
                name, name=name, type="ipv4", home_location=args.location, labels=args.labels, opts=child
            )
            hcloud.FloatingIpAssignment(
                name, floating_ip_id=numeric(self.floating_ip), server_id=numeric(self.server), opts=child
            )
        self.register_outputs({"server": self.server.id, "dataVolume": self.volume.id})


@dataclass(kw_only=True)
class RunnerGroupArgs(MachineArgs):
    ips: list[str]


class RunnerGroup(pulumi.ComponentResource):
    """Runners for multi-machine mode (`ash runner`), one server per address. Hetzner has no instance groups: a
    deleted runner comes back with `pulumi refresh` and `pulumi up` (docs/self-hosting/hetzner.md, "Runners")."""

    def __init__(
        self, name: str, args: RunnerGroupArgs, user_data: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ash:hetzner:RunnerGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.servers = [
            machine(f"{name}-{i}", args, ip=ip, user_data=user_data, role="runner", opts=child)
            for i, ip in enumerate(args.ips)
        ]
        self.register_outputs({"runners": [s.name for s in self.servers]})


@dataclass(kw_only=True)
class DatabaseArgs(MachineArgs):
    ip: str
    volume_gb: int = 20
    protect: bool = True


class Database(pulumi.ComponentResource):
    """PostgreSQL on its own server (dbboot.py): Hetzner has no managed database. `user_data` is a function of the
    volume's id."""

    def __init__(
        self,
        name: str,
        args: DatabaseArgs,
        user_data: Callable[[pulumi.Output[str]], pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ash:hetzner:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.volume = volume(
            f"{name}-db",
            size_gb=args.volume_gb,
            location=args.location,
            labels=args.labels,
            protect=args.protect,
            opts=child,
        )
        self.server = machine(
            f"{name}-db", args, ip=args.ip, user_data=user_data(self.volume.id), role="database", opts=child
        )
        attach(f"{name}-db", self.volume, self.server, child)
        self.register_outputs({"server": self.server.id, "volume": self.volume.id})
