"""infra/aws with runners (ash:runnerCount > 0), under Pulumi's mocks: the coordinator, the runners' group, their
network and roles."""

from __future__ import annotations

import json

import pulumi
from aws_mocks import (
    CONFIG,
    RUNNER_CONFIG,
    SECRET_STORES,
    SERVER_IP,
    AwsMocks,
    sg_id,
    statements_of,
    user_data_of,
)
from pulumi.runtime import rpc
from stack_support import ALL_SECRETS, INTERNAL_SECRET, SECRETS, assert_refused, common_refusals
from tests.support.boot_scripts import env_args


def test_config_accepts_runners_and_refuses_silly_values() -> None:
    from ash_aws.config import load_config

    refused = [
        *common_refusals(RUNNER_CONFIG),
        ({"ash:instanceType": "t3.micro"}, "small"),
        ({**RUNNER_CONFIG, "ash:runnerInstanceType": "t3.small"}, "runnerInstanceType t3.small is too small"),
    ]
    assert_refused(load_config, CONFIG, refused)
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
    assert "install-ash.sh /opt/ash/src postgres,s3 ash gvisor\n" in server  # systemd/ash.service
    assert "nvme-Amazon_Elastic_Block_Store" in server  # it keeps its data volume
    # Still the only target of the load balancer.
    (attachment,) = aws_runners.of("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert attachment.inputs["targetId"] == aws_runners.one("aws:ec2/instance:Instance").id


def test_runners_run_ash_runner_and_register_with_the_servers_private_address(aws_runners: AwsMocks) -> None:
    runner = user_data_of(aws_runners, "ash-test-runners")
    settings, secret_names = env_args(runner)
    assert settings["ASH_MODE"] == "runner" and settings["ASH_RUNNER_PORT"] == "4200"
    assert settings["ASH_SERVER_URL"] == "http://coordinator.ash-test.internal:4100"
    assert settings["ASH_SANDBOX_RUNTIME"] == "gvisor"  # ash:runtime, on every runner
    assert settings["ASH_SNAPSHOT_URL"] == "s3://ash-test-bucket/snapshots"
    # Its id and address come from the instance metadata at boot (IMDSv2: a token first).
    assert settings["ASH_RUNNER_ID"] == "$instance_id" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"
    assert "-X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token" in runner
    assert "instance_id=$(imds instance-id)" in runner and "private_ip=$(imds local-ipv4)" in runner
    assert "install-ash.sh /opt/ash/src postgres,s3 ash-runner gvisor\n" in runner  # systemd/ash-runner.service
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
    from ash_infra.source import REPO

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
    assert aws_runners.holding(ALL_SECRETS.values(), stores=SECRET_STORES) == []


RUNNERS_TARGET_GROUP = "arn:aws:lb:eu-west-1:123456789012:ash-test-runners"  # what the mock gives it


def test_runners_are_private_and_only_the_server_reaches_them(aws_runners: AwsMocks) -> None:
    asg = aws_runners.one("aws:autoscaling/group:Group").inputs
    private = [r.id for r in aws_runners.of("aws:ec2/subnet:Subnet") if "private" in r.name]
    assert sorted(asg["vpcZoneIdentifiers"]) == sorted(private)  # registration order is not fixed
    assert asg["desiredCapacity"] == asg["minSize"] == asg["maxSize"] == 2
    # The only target group is the health check's (the public ALB's targets the server alone).
    assert asg["targetGroupArns"] == [RUNNERS_TARGET_GROUP]
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
    health = sg_id(aws_runners, "runner-health")
    assert by_target[runner] == {(server, 4200), (health, 4200)}  # the runner port from the server and the check
    assert health not in by_target  # nothing reaches the health check's load balancer
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
    by_sid = statements_of(policy)
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


def test_the_runner_fleet_replaces_a_runner_whose_health_fails(aws_runners: AwsMocks) -> None:
    asg = aws_runners.one("aws:autoscaling/group:Group").inputs
    assert asg["healthCheckType"] == "ELB" and asg["healthCheckGracePeriod"] == 600
    target_group = aws_runners.one("aws:lb/targetGroup:TargetGroup", "ash-test-runners").inputs
    assert target_group["port"] == 4200 and target_group["protocol"] == "TCP"
    check = target_group["healthCheck"]
    assert check == {**check, "protocol": "HTTP", "path": "/health", "port": "4200", "matcher": "200"}
    # A target group checks its targets only behind a load balancer: an internal NLB nobody can reach.
    nlb = aws_runners.one("aws:lb/loadBalancer:LoadBalancer", "ash-test-runners-health").inputs
    assert nlb["loadBalancerType"] == "network" and nlb["internal"] is True
    assert nlb["securityGroups"] == [sg_id(aws_runners, "runner-health")]
    private = {r.id for r in aws_runners.of("aws:ec2/subnet:Subnet") if "private" in r.name}
    assert set(nlb["subnets"]) == private
    listener = aws_runners.one("aws:lb/listener:Listener", "ash-test-runners-health").inputs
    assert listener["defaultActions"][0]["targetGroupArn"] == RUNNERS_TARGET_GROUP
    # A replaced instance registers by itself: its id and address come from the instance metadata.
    settings, _ = env_args(user_data_of(aws_runners, "ash-test-runners"))
    assert settings["ASH_RUNNER_ID"] == "$instance_id" and settings["ASH_RUNNER_ADVERTISE_HOST"] == "$private_ip"


def test_the_fleets_bounds_come_from_config() -> None:
    from ash_aws.config import load_config
    from aws_mocks import build_stack, run_program

    mocks = run_program({**RUNNER_CONFIG, "ash:runnerMin": "1", "ash:runnerMax": "5"}, build_stack)
    asg = mocks.one("aws:autoscaling/group:Group").inputs
    assert (asg["minSize"], asg["desiredCapacity"], asg["maxSize"]) == (1, 2, 5)
    refused = [
        ({**RUNNER_CONFIG, "ash:runnerMin": "3"}, "ash:runnerMin \\(3\\) <= ash:runnerCount \\(2\\)"),
        ({**RUNNER_CONFIG, "ash:runnerMax": "1"}, "<= ash:runnerMax \\(1\\) must hold"),
        ({**RUNNER_CONFIG, "ash:runnerMin": "0"}, "at least one runner"),
    ]
    assert_refused(load_config, CONFIG, refused)
