#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,train,dev
venv="${PKDOT_VENV:-.venv}"
mkdir -p test-artifacts
"$venv/bin/ruff" check .
exec "$venv/bin/python" -m pytest "$@"
