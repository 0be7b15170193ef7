"""What the stacks' tests (infra/aws/tests, infra/gcp/tests, infra/hetzner/tests) share: where their modules are
imported from (each stack's package, the stacks' shared package infra/common/ash_infra, the mocks beside each cloud's
tests and the support in infra/common/tests), the provider SDKs' warnings, and each stack run under its mocks."""

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

INFRA = Path(__file__).resolve().parent
CLOUDS = ("aws", "gcp", "hetzner")

sys.path[:0] = [
    *(str(INFRA / cloud / "tests") for cloud in CLOUDS),
    str(INFRA / "common" / "tests"),
    str(INFRA / "common"),
    *(str(INFRA / cloud) for cloud in CLOUDS),
]


def pytest_configure(config: pytest.Config) -> None:
    # The provider SDKs warn about their own deprecated resources on import; the project's warnings stay errors.
    for provider in ("aws", "gcp", "hcloud", "command"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:pulumi_{provider}")


def stack_fixture(cloud: str, *, runners: bool) -> Any:
    """A fixture `<cloud>` (or `<cloud>_runners`): the cloud's stack run once a module under its mocks
    (<cloud>_mocks.py), with the mocks' CONFIG (one machine) or RUNNER_CONFIG (a coordinator and its runners)."""

    def stack() -> Any:
        mocks = importlib.import_module(f"{cloud}_mocks")
        return mocks.run_program(mocks.RUNNER_CONFIG if runners else mocks.CONFIG, mocks.build_stack)

    return pytest.fixture(stack, scope="module", name=f"{cloud}_runners" if runners else cloud)


aws = stack_fixture("aws", runners=False)
aws_runners = stack_fixture("aws", runners=True)
gcp = stack_fixture("gcp", runners=False)
gcp_runners = stack_fixture("gcp", runners=True)
hetzner = stack_fixture("hetzner", runners=False)
hetzner_runners = stack_fixture("hetzner", runners=True)
