#!/usr/bin/env bash
# Run only the Docker tests (static checks and the real smoke test of the CPU stack), with live progress.
# The smoke test installs docker.io / docker-compose / debootstrap from Debian and starts its own dockerd when none
# runs (root needed); see docs/docker.md. Extra arguments go to pytest, e.g. -k websocket.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,train,dev
venv="${PKDOT_VENV:-.venv}"
mkdir -p test-artifacts
exec "$venv/bin/python" -m pytest tests/test_docker.py -rs "$@"
