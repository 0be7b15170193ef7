"""The stack's package (infra/aws/ash_aws) is imported from this folder's parent."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The stacks' shared package (infra/common/ash_infra).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))
# The mocks (aws_mocks.py) beside the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aws_mocks import CONFIG, RUNNER_CONFIG, AwsMocks, build_stack, run_program


def pytest_configure(config: pytest.Config) -> None:
    # The provider SDK warns about its own deprecated resources on import; the project's warnings stay errors.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws")


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsMocks]:
    yield run_program(CONFIG, build_stack)


@pytest.fixture(scope="module")
def aws_runners() -> Iterator[AwsMocks]:
    yield run_program(RUNNER_CONFIG, build_stack)
