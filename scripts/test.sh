#!/usr/bin/env bash
# The project's checks, as CI and people run them: lint, format, types, then the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=.venv/bin/python
"$py" -m ruff check server bridge cli tests scripts infra
"$py" -m ruff format --check server bridge cli tests scripts infra
"$py" -m mypy
"$py" -m pytest "$@"
# The distribution (Docker files, systemd units, Ansible, the Pulumi programs) in a pytest process of its own:
# Pulumi's mocks break once pytest-asyncio tests have run in the same process (../shared/notes/toolchain.md).
if [[ $# -eq 0 ]]; then
  "$py" -m pytest --import-mode=importlib tests/infra infra/aws/tests infra/gcp/tests
fi
