"""infra/aws with Pulumi's mocks: the whole program runs (preview=False, so every output the checks read is known) and
the security properties are asserted on what it asked the AWS provider to create. No cloud, no Pulumi CLI."""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_mocks import SECRET_STORES, AwsMocks, sg_id, statements_of, user_data_of
from stack_support import SECRETS, SERVER_SECRETS
from tests.support.boot_scripts import env_args


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
    assert set(parameters) == {f"/ash/ash-test/{k}" for k in SERVER_SECRETS.values()}
    assert all(p["type"] == "SecureString" and p["keyId"] for p in parameters.values())
    template = aws.one("aws:ec2/launchTemplate:LaunchTemplate")
    script = base64.b64decode(template.inputs["userData"]).decode()
    for secret in SECRETS.values():
        assert secret not in script
    assert "parameters=/ash/ash-test" in script
    assert '/etc/ash/ash.env ssm \\\n  --region "$region" --prefix "$parameters"' in script
    _, secrets = env_args(script)
    assert secrets == SERVER_SECRETS
    from ash_infra.source import REPO

    write_env = (REPO / "infra/boot/write-env.py").read_text()
    assert '"aws", "ssm", "get-parameter"' in write_env and '"--with-decryption"' in write_env
    # Everything in the stack that could carry text to the instance or the console:
    assert aws.holding(SECRETS.values(), stores=SECRET_STORES) == []


def test_user_data_installs_ash_and_the_repository_unit(aws: AwsMocks) -> None:
    script = base64.b64decode(aws.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()
    assert "bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src postgres,s3" in script
    assert "ASH_SNAPSHOT_URL=" in script and "s3://ash-test-bucket/snapshots" in script
    from ash_infra.source import REPO, source_files

    shipped = {p.relative_to(REPO).as_posix() for p in source_files()}
    assert {"systemd/ash.service", "infra/boot/install-ash.sh", "requirements.lock", "pyproject.toml"} <= shipped
    assert not any("__pycache__" in p for p in shipped)
    install = (REPO / "infra/boot/install-ash.sh").read_text()
    assert 'install -m 0644 "$src/systemd/ash.service" /etc/systemd/system/ash.service' in install


def test_the_instance_role_has_least_privilege(aws: AwsMocks) -> None:
    policy = json.loads(aws.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    by_sid = statements_of(policy)
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
    assert "bash /opt/ash/src/infra/boot/install-ash.sh /opt/ash/src postgres,s3 ash bwrap\n" in user_data_of(aws)
