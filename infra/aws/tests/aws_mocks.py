"""Pulumi mocks for infra/aws: the whole program runs under them (preview=False, so every output the checks read
is known) and they record what it asked the AWS provider to create, options included."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor
from stack_support import ALL_SECRETS, INTERNAL_SECRET, SECRETS
from tests.support import pulumi_mocks
from tests.support.pulumi_mocks import RecordingMocks

CONFIG = {
    "ash:domain": "ash.example.com",
    "ash:hostedZoneId": "Z0123456789",
    "ash:alarmEmail": "ops@example.com",
    **SECRETS,
}
# Multi-machine mode: the server becomes the coordinator of two runners.
# The stacks with runners run gVisor sandboxes (ash:runtime), the single-server stacks bubblewrap, the default.
RUNNER_CONFIG = {**CONFIG, "ash:runnerCount": "2", "ash:internalSecret": INTERNAL_SECRET, "ash:runtime": "gvisor"}
SERVER_IP = "10.42.32.10"  # what the mock gives the server instance

# Where the secrets are meant to be: every other resource's inputs must hold none of them.
SECRET_STORES = ("aws:ssm/parameter:Parameter", "aws:rds/instance:Instance")


@dataclass
class Options:
    """The resource options of one registration, as the engine receives them (the mocks only see inputs)."""

    urn: str
    delete_before_replace: bool
    replace_on_changes: list[str]
    property_dependencies: dict[str, list[str]]  # input name -> URNs of the resources its value comes from


@dataclass
class AwsMocks(RecordingMocks):
    options: dict[tuple[str, str], Options] = field(default_factory=dict)  # (type, name) -> its options

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        arn = f"arn:aws:{args.typ.split(':')[1].split('/')[0]}:eu-west-1:123456789012:{args.name}"
        outputs.setdefault("arn", arn)
        typ = args.typ
        if typ == "aws:s3/bucket:Bucket":
            outputs.update(bucket=f"{args.name}-bucket", arn=f"arn:aws:s3:::{args.name}-bucket")
        elif typ == "aws:acm/certificate:Certificate":
            outputs["domainValidationOptions"] = [
                {
                    "domainName": args.inputs["domainName"],
                    "resourceRecordName": "_x.ash.example.com.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_y.acm-validations.aws.",
                }
            ]
        elif typ == "aws:acm/certificateValidation:CertificateValidation":
            outputs["certificateArn"] = args.inputs["certificateArn"]
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            outputs.update(arnSuffix=f"app/{args.name}/1", dnsName=f"{args.name}.elb.amazonaws.com", zoneId="Z1")
        elif typ == "aws:lb/targetGroup:TargetGroup":
            outputs["arnSuffix"] = f"targetgroup/{args.name}/1"
        elif typ == "aws:rds/instance:Instance":
            outputs.update(address=f"{args.name}.rds.amazonaws.com", port=5432, identifier=args.name)
        elif typ == "aws:kms/key:Key":
            outputs["keyId"] = "key-1"
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs["latestVersion"] = 1
        elif typ == "aws:route53/record:Record":
            outputs["fqdn"] = args.inputs.get("name", "")
        elif typ == "aws:iam/role:Role":
            outputs["name"] = args.name
        elif typ == "aws:ec2/instance:Instance":
            outputs["privateIp"] = SERVER_IP
        elif typ == "aws:route53/zone:Zone":
            outputs["zoneId"] = f"{args.name}-zone"
        return self.record(args, outputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ["eu-west-1a", "eu-west-1b", "eu-west-1c"], "zoneIds": ["a", "b", "c"]}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0123456789", "name": "debian-12-amd64-20260101"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": "eu-west-1", "name": "eu-west-1", "id": "eu-west-1"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:root", "userId": "x"}
        return {}


class RecordingMonitor(MockMonitor):
    """Pulumi's mock monitor, which also records the options of each registration (delete_before_replace,
    replace_on_changes, property dependencies): what decides the order of a replacement."""

    def __init__(self, mocks: AwsMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        self.recorder.options[(request.type, request.name)] = Options(
            urn=self.make_urn(request.parent, request.type, request.name),
            delete_before_replace=request.deleteBeforeReplace,
            replace_on_changes=list(request.replaceOnChanges),
            property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
        )
        return super().RegisterResource(request)


def run_program(config: dict[str, str], build: Any) -> AwsMocks:
    """Run `build(mocks)` under fresh mocks and config; returns the mocks holding every registered resource."""
    mocks = AwsMocks()
    return pulumi_mocks.run_program(mocks, "ash-aws", config, ALL_SECRETS, build, monitor=RecordingMonitor(mocks))


def build_stack(mocks: AwsMocks) -> Any:
    from ash_aws.config import load_config
    from ash_aws.stack import build

    config = load_config()
    stack = build(config)
    outputs = [stack.server.instance.id, stack.load_balancer.https.arn]
    if stack.runners is not None:
        # Whether the internal secret is a Pulumi secret, from the config to the parameter that stores it.
        secret_outputs = {
            "config": config.internal_secret,
            "parameter": stack.secrets.parameters["internal-secret"].value,
        }
        for key, output in secret_outputs.items():
            assert output is not None
            flag = pulumi.Output.from_input(output.is_secret())
            outputs.append(flag.apply(lambda secret, key=key: mocks.probes.update({f"secret:{key}": secret})))
        outputs.append(stack.runners.group.id)
    return pulumi.Output.all(*outputs)


def statements_of(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An instance role's policy statements by Sid, once each is checked for least privilege: it allows, grants no
    wildcard action, and names every resource only to put metrics, under a condition."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow"
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        if "*" in resources:
            assert actions == ["cloudwatch:PutMetricData"] and statement["Condition"], statement
    return {s["Sid"]: s for s in policy["Statement"]}


def sg_id(mocks: AwsMocks, role: str) -> str:
    return mocks.one("aws:ec2/securityGroup:SecurityGroup", f"ash-test-{role}").id


def user_data_of(mocks: AwsMocks, template: str = "ash-test") -> str:
    """The user data of the server's (ash-test) or the runners' (ash-test-runners) launch template."""
    encoded = mocks.one("aws:ec2/launchTemplate:LaunchTemplate", template).inputs["userData"]
    return base64.b64decode(encoded).decode()
