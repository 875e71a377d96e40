#!/usr/bin/env bash
# Install everything the tests need into .venv (the cluster extra too: the Ray and Triton tests run in CI) and run
# the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,train,dev,cluster
venv="${PKDOT_VENV:-.venv}"
mkdir -p test-artifacts
"$venv/bin/ruff" check .
exec "$venv/bin/python" -m pytest "$@"
