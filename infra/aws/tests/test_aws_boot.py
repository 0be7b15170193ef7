"""The instances' user data infra/aws renders (ash_aws.boot): order, checked secret reads, shellcheck."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stack_support import assert_shellcheck_passes


def test_the_boot_scripts_pass_shellcheck(tmp_path: Path) -> None:
    from ash_aws.boot import BootArgs, user_data

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
    assert_shellcheck_passes({name: user_data(args) for name, args in scripts.items()}, tmp_path)


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
