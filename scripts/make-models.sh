#!/usr/bin/env bash
# Make the bundled demo models from nothing: synthetic datasets -> face crops -> teacher -> PKDOT student -> ONNX.
#   bash scripts/make-models.sh            (or: make models)
# Writes data/ (datasets, caches), runs/models/ (training runs) and models/{pain,affect}-{student,teacher}/.
# Installs the training extra into .venv first. Deterministic for a seed; about 15-25 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,train,dev
pkdot="${PKDOT_VENV:-.venv}/bin/pkdot"
seed="${SEED:-0}"
runs=runs/models

synth() {  # dataset folder options...
  local dataset=$1 folder=$2; shift 2
  if [ ! -f "$folder/.complete" ]; then
    "$pkdot" synth "$dataset" --out "$folder" --seed "$seed" --force "$@"
    touch "$folder/.complete"
  fi
}

synth biovid data/synthetic/biovid
synth affwild2 data/synthetic/affwild2
"$pkdot" prepare --dataset biovid data/synthetic/biovid --out data/cache/biovid-synthetic --size 64 --every 2 --workers 2
"$pkdot" prepare --dataset affwild2 data/synthetic/affwild2 --out data/cache/affwild2-synthetic --size 64 --workers 2

for task in pain affect; do
  config=configs/synthetic/$task.toml
  "$pkdot" train-teacher --config "$config" --out "$runs/$task-teacher" --seed "$seed" --no-progress
  "$pkdot" distill --config "$config" --teacher "$runs/$task-teacher" --kd pkdot --out "$runs/$task-student" \
    --seed "$seed" --no-progress
  "$pkdot" export "$runs/$task-student" --out "models/$task-student" --synthetic --force
  "$pkdot" export "$runs/$task-teacher" --out "models/$task-teacher" --synthetic --force
done
"${PKDOT_VENV:-.venv}/bin/python" -m training.export.catalog models
# held-out synthetic data (seed 7) through `pkdot serve`: figures into each MODEL_CARD.md and models/heldout.json
"${PKDOT_VENV:-.venv}/bin/python" -m training.export.heldout models --write-cards --out models/heldout.json
echo "models written: $(ls -d models/*/ | tr '\n' ' '); catalogue in models/README.md"
