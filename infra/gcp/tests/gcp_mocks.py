"""Pulumi mocks for infra/gcp: the whole program runs under them (preview=False) and they record what it asked the
Google Cloud provider to create."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from stack_support import ALL_SECRETS, INTERNAL_SECRET, SECRETS
from tests.support import pulumi_mocks
from tests.support.pulumi_mocks import RecordingMocks

CHANNELS = ["123", "projects/other-project/notificationChannels/456"]  # existing channels: an id, a full name
CONFIG = {
    "gcp:project": "my-project",
    "gcp:region": "europe-west1",
    "ash:domain": "ash.example.com",
    "ash:alarmEmail": "ops@example.com",
    "ash:notificationChannels": json.dumps(CHANNELS),
    **SECRETS,
}
# Multi-machine mode: the server becomes the coordinator of two runners.
RUNNER_CONFIG = {
    **CONFIG,
    "ash:runnerCount": "2",
    "ash:internalSecret": INTERNAL_SECRET,
    "ash:diskSnapshotRetentionDays": "30",
    "ash:runtime": "gvisor",  # the single-server stack keeps bubblewrap, the default
}
COORDINATOR_IP = "10.43.0.10"  # what the mock reserves for the coordinator
SERVER_SA = "serviceAccount:ash-test-server@my-project.iam.gserviceaccount.com"
RUNNER_SA = "serviceAccount:ash-test-runner@my-project.iam.gserviceaccount.com"

# Where the secrets are meant to be: every other resource's inputs must hold none of them.
SECRET_STORES = ("gcp:secretmanager/secretVersion:SecretVersion", "gcp:sql/user:User")


class GcpMocks(RecordingMocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        outputs.setdefault("name", args.name)
        outputs.setdefault("selfLink", f"https://compute/{args.name}")
        typ = args.typ
        if typ == "gcp:serviceaccount/account:Account":
            outputs["email"] = f"{args.inputs['accountId']}@my-project.iam.gserviceaccount.com"
        elif typ == "gcp:sql/databaseInstance:DatabaseInstance":
            outputs["privateIpAddress"] = "10.90.0.3"
        elif typ == "gcp:compute/globalAddress:GlobalAddress":
            outputs["address"] = "34.1.2.3"
        elif typ == "gcp:compute/address:Address":
            outputs["address"] = COORDINATOR_IP
        elif typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            outputs["selfLinkUnique"] = f"https://compute/{args.name}?uniqueId=1"
        elif typ in (
            "gcp:compute/instanceGroupManager:InstanceGroupManager",
            "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
        ):
            outputs["instanceGroup"] = f"https://compute/groups/{args.name}"
        elif typ == "gcp:monitoring/notificationChannel:NotificationChannel":
            outputs["name"] = f"projects/my-project/notificationChannels/{args.name}"
        elif typ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
            outputs["uptimeCheckId"] = f"{args.name}-check"
        return self.record(args, outputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def run_program(config: dict[str, str], build: Any) -> GcpMocks:
    """Run `build(mocks)` under fresh mocks and config; returns the mocks holding every registered resource."""
    return pulumi_mocks.run_program(GcpMocks(), "ash-gcp", config, ALL_SECRETS, build)


def build_stack(mocks: GcpMocks) -> Any:
    from ash_gcp.config import load_config
    from ash_gcp.stack import build

    config = load_config()
    stack = build(config)
    outputs = [stack.server.group.id, stack.load_balancer.https.id]
    if stack.runners is not None:
        # Whether the internal secret is a Pulumi secret, from the config to what the stack stores.
        assert config.internal_secret is not None
        flag = pulumi.Output.from_input(config.internal_secret.is_secret())
        outputs += [flag.apply(lambda secret: mocks.probes.update({"secret:config": secret})), stack.runners.group.id]
    return pulumi.Output.all(*outputs)


def startup_script(gcp: GcpMocks, template: str | None = None) -> str:
    """The startup script of the server's (ash-test) or the runners' (ash-test-runners) instance template."""
    script: str = gcp.one("gcp:compute/instanceTemplate:InstanceTemplate", template).inputs["metadataStartupScript"]
    return script
