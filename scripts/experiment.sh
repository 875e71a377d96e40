#!/usr/bin/env bash
# The comparison experiment on the synthetic datasets (docs/experiments.md): teacher, visual-only, every KD method,
# every subject fold x seeds 0 1 2 per task, with paired confidence intervals (extra arguments go to
# `pkdot experiment`, e.g. --quick or --tune). Makes the data first when missing (as scripts/make-models.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,train,dev
venv="${PKDOT_VENV:-.venv}"
pkdot="$venv/bin/pkdot"
for d in biovid affwild2; do
  if [ ! -f "data/synthetic/$d/.complete" ]; then
    "$pkdot" synth "$d" --out "data/synthetic/$d" --force && touch "data/synthetic/$d/.complete"
  fi
done
"$pkdot" prepare --dataset biovid data/synthetic/biovid --out data/cache/biovid-synthetic --size 64 --every 2 \
  --workers 2 --no-progress
"$pkdot" prepare --dataset affwild2 data/synthetic/affwild2 --out data/cache/affwild2-synthetic --size 64 \
  --workers 2 --no-progress
start=$(date +%s)
"$pkdot" experiment --out runs/experiment "$@"
echo "experiment wall time: $(( $(date +%s) - start )) s"
"$venv/bin/python" -m training.experiment_report runs/experiment docs/experiments.md
