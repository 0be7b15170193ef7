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

        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={"Name": f"{name}-public"},
            opts=vpc_child,
        )
        self.public_subnets, self.private_subnets = [], []
        for i in range(args.zones):
            zone = zones[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[i]),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{i}", "ash:tier": "public"},
                opts=vpc_child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=vpc_child
            )
            self.public_subnets.append(public)

        # One NAT gateway: the private instances reach the model API, PyPI and AWS APIs through it.
        eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags={"Name": f"{name}-nat"}, opts=vpc_child)
        nat = aws.ec2.NatGateway(
            name, allocation_id=eip.id, subnet_id=self.public_subnets[0].id, tags={"Name": name}, opts=vpc_child
        )
        private_rt = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
            tags={"Name": f"{name}-private"},
            opts=vpc_child,
        )
        for i in range(args.zones):
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[args.zones + i]),
                availability_zone=zones[i],
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-private-{i}", "ash:tier": "private"},
                opts=vpc_child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=private.id, route_table_id=private_rt.id, opts=vpc_child
            )
            self.private_subnets.append(private)

        self.register_outputs({"vpcId": self.vpc.id})
