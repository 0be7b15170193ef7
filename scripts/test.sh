#!/usr/bin/env bash
# The project's checks, as CI and people run them: lint, format, types, then the whole test suite, and last the
# distribution stage (tests/distribution: the deployment paths run for real in podman; the slowest stage).
#   scripts/test.sh                    everything
#   scripts/test.sh --no-distribution  everything but the distribution stage
#   scripts/test.sh ARGS...            only pytest ARGS (e.g. a file), after lint and types
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=.venv/bin/python
distribution=1
if [[ "${1:-}" == "--no-distribution" ]]; then
  distribution=0
  shift
fi
"$py" -m ruff check server bridge cli tests scripts infra
"$py" -m ruff format --check server bridge cli tests scripts infra
"$py" -m mypy
"$py" -m pytest "$@"
# The distribution (Docker files, systemd units, Ansible, the Pulumi programs) in a pytest process of its own:
# Pulumi's mocks break once pytest-asyncio tests have run in the same process (../shared/notes/toolchain.md).
if [[ $# -eq 0 ]]; then
  "$py" -m pytest --import-mode=importlib tests/infra infra/aws/tests infra/gcp/tests infra/hetzner/tests
  if [[ $distribution -eq 1 ]]; then
    echo "==> distribution stage (tests/distribution)"
    started=$(date +%s)
    "$py" -m pytest tests/distribution -o addopts="--strict-markers -p no:cacheprovider" --timeout 2400 -v --durations=8
    echo "==> distribution stage took $(($(date +%s) - started)) s"
  fi
fi
