"""The stack's package (infra/gcp/ash_gcp) is imported from this folder's parent."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_configure(config: pytest.Config) -> None:
    # The provider SDK warns about its own deprecated resources on import; the project's warnings stay errors.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_gcp")
