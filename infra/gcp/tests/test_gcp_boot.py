"""The startup script infra/gcp renders (ash_gcp.boot): order, checked secret reads, shellcheck."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gcp_mocks import COORDINATOR_IP
from stack_support import assert_shellcheck_passes


def test_the_startup_scripts_pass_shellcheck(tmp_path: Path) -> None:
    from ash_gcp.boot import BootArgs, startup_script

    common: dict[str, Any] = {
        "project": "my-project",
        "bucket": "b",
        "archive_key": "artifacts/ash-0.zip",
        "secret_prefix": "ash-test",
        "snapshot_url": "gs://b/snapshots",
        "settings": {"ASH_MAX_SANDBOXES": "20"},
    }
    scripts = {
        "standalone": BootArgs(**common, secret_names=["api-key", "database-url"]),
        "coordinator": BootArgs(**common, secret_names=["api-key", "internal-secret"], coordinator=True),
        "runner": BootArgs(
            **common,
            secret_names=["database-url", "internal-secret"],
            role="runner",
            server_url=f"http://{COORDINATOR_IP}:4100",
        ),
    }
    assert_shellcheck_passes({name: startup_script(args) for name, args in scripts.items()}, tmp_path)


def test_the_ops_agent_starts_before_anything_that_can_fail_and_every_secret_read_is_checked() -> None:
    from ash_gcp.boot import BootArgs, startup_script

    common: dict[str, Any] = {"project": "p", "bucket": "b", "archive_key": "a.zip", "secret_prefix": "ash-test"}
    server = BootArgs(**common, secret_names=["api-key"])
    runner = BootArgs(**common, secret_names=["internal-secret"], role="runner", server_url="http://c:4100")
    for args in (server, runner):
        script = startup_script(args)
        agent = script.index("systemctl restart google-cloud-ops-agent")
        assert script.index("set -Eeuo pipefail\n") < agent
        for later in (
            "\napt-get update",
            "\ninstance_name=",
            "\ndevice=",
            "auth_header |",
            "\npython3 /opt/ash/src/infra/boot/write-env.py",
            "\nbash /opt/ash/src/infra/boot/install-ash.sh",
        ):
            assert later not in script or agent < script.index(later), later
        assert ">/etc/ash/ash.env" not in script and "$(secret" not in script
        # The token travels in a header on curl's stdin, never on a command line.
        assert "Bearer $(" not in script and "auth_header | curl -fsS -H @-" in script
    outside = startup_script(BootArgs(**common, secret_names=["api-key"], cloud_machine=False, storage_url="http://f"))
    assert "google-cloud-ops-agent" not in outside and "google-ash-data" not in outside
    assert "storage_url=http://f" in outside
