"""The VPC: two public subnets (the load balancer, the NAT gateway) and two private ones (the server, the database)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class NetworkArgs:
    cidr: str
    zones: int = 2


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones_output(state="available").names
        blocks = list(ipaddress.ip_network(args.cidr).subnets(new_prefix=20))

        self.vpc = aws.ec2.Vpc(
            name,
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": name},
            opts=child,
        )
        vpc_child = pulumi.ResourceOptions(parent=self.vpc)
        igw = aws.ec2.InternetGateway(name, vpc_id=self.vpc.id, tags={"Name": name}, opts=vpc_child)
        # The account default security group of a new VPC allows everything between its members: empty it.
        aws.ec2.DefaultSecurityGroup(name, vpc_id=self.vpc.id, ingress=[], egress=[], opts=vpc_child)

        public = aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)
        public_blocks = [str(blocks[i]) for i in range(args.zones)]
        self.public_subnets = self._tier(name, "public", public, public_blocks, zones, vpc_child)

        # One NAT gateway: the private instances reach the model API, PyPI and AWS APIs through it.
        eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags={"Name": f"{name}-nat"}, opts=vpc_child)
        nat = aws.ec2.NatGateway(
            name, allocation_id=eip.id, subnet_id=self.public_subnets[0].id, tags={"Name": name}, opts=vpc_child
        )
        private = aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)
        private_blocks = [str(blocks[args.zones + i]) for i in range(args.zones)]
        self.private_subnets = self._tier(name, "private", private, private_blocks, zones, vpc_child)

        self.register_outputs({"vpcId": self.vpc.id})

    def _tier(
        self,
        name: str,
        tier: str,
        route: aws.ec2.RouteTableRouteArgs,
        blocks: list[str],
        zones: pulumi.Output[list[str]],
        opts: pulumi.ResourceOptions,
    ) -> list[aws.ec2.Subnet]:
        """A subnet per CIDR block, each in its own zone, with the tier's route table (its default route: `route`)."""
        table = aws.ec2.RouteTable(
            f"{name}-{tier}", vpc_id=self.vpc.id, routes=[route], tags={"Name": f"{name}-{tier}"}, opts=opts
        )
        subnets = []
        for i, block in enumerate(blocks):
            subnet = aws.ec2.Subnet(
                f"{name}-{tier}-{i}",
                vpc_id=self.vpc.id,
                cidr_block=block,
                availability_zone=zones[i],
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-{tier}-{i}", "ash:tier": tier},
                opts=opts,
            )
            aws.ec2.RouteTableAssociation(f"{name}-{tier}-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=opts)
            subnets.append(subnet)
        return subnets
