#!/usr/bin/env bash
# The project's checks, as CI and people run them: lint, format, types, then the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=.venv/bin/python
"$py" -m ruff check server bridge cli tests scripts
"$py" -m ruff format --check server bridge cli tests scripts
"$py" -m mypy
"$py" -m pytest "$@"
