#!/usr/bin/env bash
# Create .venv (if missing) and install PKDOT with the given extras, pinned by constraints.txt.
#   bash scripts/setup.sh serve            # the service only (no torch)
#   bash scripts/setup.sh serve,train,dev  # everything
# PKDOT_VENV overrides the environment's location.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-serve}"
venv="${PKDOT_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.pkdot-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "==> installing pkdot[$extras] (pinned by constraints.txt)"
  "$venv/bin/python" -m pip install --quiet -c constraints.txt -e ".[$extras]"
  touch "$stamp"
fi
