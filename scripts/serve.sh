#!/usr/bin/env bash
# Install the service (no torch) into .venv and run it on the bundled models in models/.
# Extra arguments go to `pkdot serve` (e.g. --port 8080); PKDOT_* environment variables work too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
venv="${PKDOT_VENV:-.venv}"
exec "$venv/bin/pkdot" serve "$@"
