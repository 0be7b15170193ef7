"""infra/aws with Pulumi's mocks: the whole program runs (preview=False, so every output the checks read is known) and
the security properties are asserted on what it asked the AWS provider to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest

SECRETS = {
    "ash:apiKey": "ash_test-api-key-0123456789abcdef",
    "ash:anthropicApiKey": "sk-ant-test-0123456789",
    "ash:credentialKey": "credential-key-0123456789abcdef",
    "ash:databasePassword": "db-password-0123456789abcdef",
}
CONFIG = {
    "ash:domain": "ash.example.com",
    "ash:hostedZoneId": "Z0123456789",
    "ash:alarmEmail": "ops@example.com",
    **SECRETS,
}


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str


@dataclass
class AwsMocks(pulumi.runtime.Mocks):
    resources: list[Resource] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid = f"{args.name}-id"
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
        self.resources.append(Resource(typ, args.name, dict(args.inputs), rid))
        return rid, outputs

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

    def of(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Resource:
        found = [r for r in self.of(typ) if name is None or r.name == name]
        assert len(found) == 1, (typ, name, [r.name for r in self.of(typ)])
        return found[0]


def run_program(config: dict[str, str], build: Any) -> AwsMocks:
    """Run `build()` under fresh mocks and config; returns the mocks holding every registered resource."""
    mocks = AwsMocks()
    pulumi.runtime.set_mocks(mocks, project="ash-aws", stack="test", preview=False)
    pulumi.runtime.set_all_config(config, secret_keys=list(SECRETS))

    @pulumi.runtime.test
    def program() -> Any:
        return build()

    program()  # returns once every resource is registered (Pulumi waits for outstanding RPCs)
    return mocks


def build_stack() -> Any:
    from ash_aws.config import load_config
    from ash_aws.stack import build

    stack = build(load_config())
    return pulumi.Output.all(stack.server.instance.id, stack.load_balancer.https.arn)


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsMocks]:
    yield run_program(CONFIG, build_stack)


def sg_id(mocks: AwsMocks, role: str) -> str:
    return mocks.one("aws:ec2/securityGroup:SecurityGroup", f"ash-test-{role}").id


def test_only_the_load_balancer_is_open_to_the_internet(aws: AwsMocks) -> None:
    ingress = aws.of("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    public = [r for r in ingress if r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6")]
    assert public and {r.inputs["securityGroupId"] for r in public} == {sg_id(aws, "lb")}
    assert {(r.inputs["fromPort"], r.inputs["toPort"]) for r in public} == {(80, 80), (443, 443)}
    by_target = {
        (r.inputs["securityGroupId"], r.inputs.get("referencedSecurityGroupId"), r.inputs["fromPort"])
        for r in ingress
        if r not in public
    }
    assert by_target == {
        (sg_id(aws, "server"), sg_id(aws, "lb"), 4100),
        (sg_id(aws, "db"), sg_id(aws, "server"), 5432),
        (sg_id(aws, "db"), sg_id(aws, "runner"), 5432),
        (sg_id(aws, "runner"), sg_id(aws, "server"), 4200),
    }
    for group in aws.of("aws:ec2/securityGroup:SecurityGroup"):
        assert not group.inputs.get("ingress"), group.name  # no inline rules besides the separate ones
    assert aws.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs.get("ingress", []) == []


def test_instances_are_private_with_imdsv2_and_encrypted_disks(aws: AwsMocks) -> None:
    private = {r.id for r in aws.of("aws:ec2/subnet:Subnet") if "private" in r.name}
    assert all(not s.inputs.get("mapPublicIpOnLaunch") for s in aws.of("aws:ec2/subnet:Subnet"))
    instance = aws.one("aws:ec2/instance:Instance")
    assert instance.inputs["subnetId"] in private
    assert instance.inputs["associatePublicIpAddress"] is False
    template = aws.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"
    assert template.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert "networkInterfaces" not in template.inputs  # no public address through an interface either
    ebs = template.inputs["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["kmsKeyId"]
    volume = aws.one("aws:ebs/volume:Volume")
    assert volume.inputs["encrypted"] is True and volume.inputs["kmsKeyId"]
    assert aws.one("aws:dlm/lifecyclePolicy:LifecyclePolicy").inputs["state"] == "ENABLED"
    assert instance.inputs["launchTemplate"]["id"] == template.id


def test_the_database_is_private_encrypted_backed_up_and_requires_tls(aws: AwsMocks) -> None:
    db = aws.one("aws:rds/instance:Instance").inputs
    assert db["publiclyAccessible"] is False
    assert db["storageEncrypted"] is True and db["kmsKeyId"]
    assert db["backupRetentionPeriod"] >= 7
    assert db["deletionProtection"] is True and db["skipFinalSnapshot"] is False
    assert db["vpcSecurityGroupIds"] == [sg_id(aws, "db")]
    subnets = aws.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"]
    assert all("private" in s for s in subnets)
    params = aws.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]
    assert {"name": "rds.force_ssl", "value": "1"} in [{k: p[k] for k in ("name", "value")} for p in params]


def test_the_bucket_is_private_encrypted_versioned_with_a_lifecycle(aws: AwsMocks) -> None:
    block = aws.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    encryption = aws.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    default = encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default["sseAlgorithm"] == "aws:kms" and default["kmsMasterKeyId"]
    versioning = aws.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    rules = aws.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert any(r.get("noncurrentVersionExpiration") for r in rules)
    assert any(r.get("abortIncompleteMultipartUpload") for r in rules)
    ownership = aws.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"  # no ACLs at all
    policy = json.loads(aws.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    artifact = aws.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs
    assert artifact["serverSideEncryption"] == "aws:kms"


def test_https_is_enforced(aws: AwsMocks) -> None:
    listeners = {r.inputs["port"]: r.inputs for r in aws.of("aws:lb/listener:Listener")}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["protocol"] == "HTTPS" and https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert https["certificateArn"]
    assert https["defaultActions"][0]["type"] == "forward"
    redirect = listeners[80]["defaultActions"][0]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}
    alb = aws.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["internal"] is False and alb["dropInvalidHeaderFields"] is True
    assert all("public" in s for s in alb["subnets"])
    assert aws.one("aws:lb/targetGroup:TargetGroup").inputs["healthCheck"]["path"] == "/health"
    assert aws.one("aws:acm/certificate:Certificate").inputs["validationMethod"] == "DNS"


def test_secrets_are_in_ssm_and_never_in_user_data(aws: AwsMocks) -> None:
    parameters = {r.inputs["name"]: r.inputs for r in aws.of("aws:ssm/parameter:Parameter")}
    assert set(parameters) == {
        f"/ash/ash-test/{k}" for k in ("api-key", "anthropic-api-key", "credential-key", "database-url")
    }
    assert all(p["type"] == "SecureString" and p["keyId"] for p in parameters.values())
    template = aws.one("aws:ec2/launchTemplate:LaunchTemplate")
    script = base64.b64decode(template.inputs["userData"]).decode()
    for secret in SECRETS.values():
        assert secret not in script
    assert "aws ssm get-parameter" in script and "--with-decryption" in script
    assert "parameters=/ash/ash-test" in script
    for name in ("api-key", "anthropic-api-key", "credential-key", "database-url"):
        assert f"$(param {name})" in script
    # Everything in the stack that could carry text to the instance or the console:
    for resource in aws.resources:
        if resource.typ in ("aws:ssm/parameter:Parameter", "aws:rds/instance:Instance"):
            continue
        blob = json.dumps(resource.inputs, default=str)
        assert not any(secret in blob for secret in SECRETS.values()), resource.typ


def test_user_data_installs_ash_and_the_repository_unit(aws: AwsMocks) -> None:
    script = base64.b64decode(aws.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()
    assert "bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src postgres,s3" in script
    assert "ASH_SNAPSHOT_URL=" in script and "s3://ash-test-bucket/snapshots" in script
    from ash_aws.source import REPO, source_files

    shipped = {p.relative_to(REPO).as_posix() for p in source_files()}
    assert {"systemd/ash.service", "infra/boot/install-ash.sh", "requirements.lock", "pyproject.toml"} <= shipped
    assert not any("__pycache__" in p for p in shipped)
    install = (REPO / "infra/boot/install-ash.sh").read_text()
    assert 'install -m 0644 "$src/systemd/ash.service" /etc/systemd/system/ash.service' in install


def test_the_instance_role_has_least_privilege(aws: AwsMocks) -> None:
    policy = json.loads(aws.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow"
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        if "*" in resources:
            assert actions == ["cloudwatch:PutMetricData"] and statement["Condition"], statement
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadOwnParameters"]["Resource"] == "arn:aws:ssm:eu-west-1:123456789012:parameter/ash/ash-test/*"
    assert by_sid["ReadWriteSnapshots"]["Resource"].endswith("-bucket/snapshots/*")
    assert by_sid["ReadReleaseArchive"]["Action"] == ["s3:GetObject"]
    assert "InvokeClaudeOnBedrock" not in by_sid
    attached = {r.inputs["policyArn"] for r in aws.of("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert "arn:aws:iam::aws:policy/AdministratorAccess" not in attached
    assert attached <= {
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole",
    }


def test_alarms_and_logs(aws: AwsMocks) -> None:
    metrics = {r.inputs["metricName"] for r in aws.of("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert {
        "UnHealthyHostCount",
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
        "CPUUtilization",
        "StatusCheckFailed_System",
        "FreeStorageSpace",
    } <= metrics
    assert aws.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 30
    assert aws.one("aws:sns/topicSubscription:TopicSubscription").inputs["endpoint"] == "ops@example.com"


def test_bedrock_adds_only_claude_invocation() -> None:
    from ash_aws.policy import instance_policy

    policy = instance_policy(
        parameter_arn_prefix="p",
        key_arn="k",
        bucket_arn="b",
        log_group_arn="l",
        metrics_namespace="n",
        region="eu-west-1",
        bedrock=True,
    )
    (bedrock,) = [s for s in policy["Statement"] if s["Sid"] == "InvokeClaudeOnBedrock"]
    assert bedrock["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert all("anthropic." in r for r in bedrock["Resource"])


def test_config_refuses_runners_and_small_instances() -> None:
    from ash_aws.config import ConfigError, load_config

    for extra, message in (({"ash:runnerCount": "2"}, "multi-machine"), ({"ash:instanceType": "t3.micro"}, "small")):
        pulumi.runtime.set_all_config({**CONFIG, **extra}, secret_keys=list(SECRETS))
        with pytest.raises(ConfigError, match=message):
            load_config()
    pulumi.runtime.set_all_config(CONFIG, secret_keys=list(SECRETS))
    assert load_config().instance_type == "t3.large"


def test_runner_group_is_private_behind_the_server() -> None:
    def build_runners() -> Any:
        from ash_aws.compute import RunnerGroup, RunnerGroupArgs

        group = RunnerGroup(
            "runners",
            RunnerGroupArgs(
                count=2,
                instance_type="c5.xlarge",
                subnet_ids=["private-0-id", "private-1-id"],
                security_group_id="sg-runner",
                kms_key_arn="arn:key",
                policy="{}",
                user_data="#!/bin/bash\n",
            ),
        )
        return group.group.id

    mocks = run_program(CONFIG, build_runners)
    asg = mocks.one("aws:autoscaling/group:Group").inputs
    assert asg["vpcZoneIdentifiers"] == ["private-0-id", "private-1-id"] and asg["desiredCapacity"] == 2
    template = mocks.one("aws:ec2/launchTemplate:LaunchTemplate").inputs
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["vpcSecurityGroupIds"] == ["sg-runner"]
