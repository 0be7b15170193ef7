"""The VPC: one regional subnet with Private Google Access, Cloud NAT for outbound traffic (instances have no public
address), the peering Cloud SQL's private IP needs, and firewall rules that admit only Google's load balancer and
health checkers to the API port (and IAP for SSH). In multi-machine mode also: the coordinator's reserved internal
address, the runners to the server's API port (they register and heartbeat there) and IAP SSH to the runners."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
from ash_infra.boot import API_PORT, RUNNER_PORT

# Google Front Ends and health checkers: the only sources of load-balanced traffic.
GOOGLE_LB_RANGES = ["130.211.0.0/22", "35.191.0.0/16"]
# Identity-Aware Proxy TCP forwarding (`gcloud compute ssh --tunnel-through-iap`).
IAP_RANGE = "35.235.240.0/20"
SERVER_TAG = "ash-server"
RUNNER_TAG = "ash-runner"


@dataclass
class NetworkArgs:
    region: str
    cidr: str
    runners: bool = False


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = gcp.compute.Network(name, auto_create_subnetworks=False, opts=child)
        self.subnet = gcp.compute.Subnetwork(
            name,
            network=self.vpc.id,
            region=args.region,
            ip_cidr_range=args.cidr,
            private_ip_google_access=True,
            log_config=gcp.compute.SubnetworkLogConfigArgs(aggregation_interval="INTERVAL_5_MIN"),
            opts=child,
        )
        router = gcp.compute.Router(name, network=self.vpc.id, region=args.region, opts=child)
        gcp.compute.RouterNat(
            name,
            router=router.name,
            region=args.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )
        # Cloud SQL's private IP: a range of this VPC peered with Google's service network.
        peering_range = gcp.compute.GlobalAddress(
            f"{name}-sql",
            network=self.vpc.id,
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=20,
            opts=child,
        )
        self.peering = gcp.servicenetworking.Connection(
            name,
            network=self.vpc.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[peering_range.name],
            opts=child,
        )

        def allow(
            rule: str, ports: list[str], sources: list[str] | None, target: str, tags: list[str] | None = None
        ) -> None:
            gcp.compute.Firewall(
                f"{name}-{rule}",
                network=self.vpc.id,
                direction="INGRESS",
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=ports)],
                source_ranges=sources,
                source_tags=tags,
                target_tags=[target],
                log_config=gcp.compute.FirewallLogConfigArgs(metadata="EXCLUDE_ALL_METADATA"),
                opts=child,
            )

        allow("lb-to-server", [str(API_PORT)], GOOGLE_LB_RANGES, SERVER_TAG)
        allow("iap-ssh", ["22"], [IAP_RANGE], SERVER_TAG)
        allow("server-to-runner", [str(RUNNER_PORT)], None, RUNNER_TAG, tags=[SERVER_TAG])
        # The coordinator's internal address: reserved, so that it stays the server's when the group re-creates the
        # VM and no other VM of the subnet gets it. Runners register with http://<it>:4100.
        self.coordinator_address: gcp.compute.Address | None = None
        if args.runners:
            allow("runner-to-server", [str(API_PORT)], None, SERVER_TAG, tags=[RUNNER_TAG])
            allow("iap-ssh-runner", ["22"], [IAP_RANGE], RUNNER_TAG)
            # The runners' autohealing: Google's health checkers probe /health on the runner port (compute.py).
            allow("health-check-to-runner", [str(RUNNER_PORT)], GOOGLE_LB_RANGES, RUNNER_TAG)
            self.coordinator_address = gcp.compute.Address(
                f"{name}-coordinator",
                address_type="INTERNAL",
                purpose="GCE_ENDPOINT",
                region=args.region,
                subnetwork=self.subnet.id,
                description="Ash coordinator: the server's internal address, where runners register",
                opts=child,
            )
        self.register_outputs({"network": self.vpc.id, "subnet": self.subnet.id})
