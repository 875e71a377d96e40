"""Run the comparison: teacher, visual-only and every distillation method, over seeds and subject folds."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="TOML base config of the task (see configs/)")
    p.add_argument("--data", dest="root", help="dataset root (overrides the config)")
    p.add_argument("--cache", help="face-crop cache (overrides the config)")
    p.add_argument("--out", type=Path, required=True, help="experiment folder (resumable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default 0 1)")
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="test folds (default 0 1)")
    p.add_argument("--methods", nargs="+", help="subset of: none kd fitnet pkd smpkd rkd pkt pkdot (default all)")
    p.add_argument("--tune", action="store_true",
                   help="first tune PKDOT's λ, k and ε on the first fold's validation subjects (never a test fold)")
    p.add_argument("--workers", type=int, default=2, help="runs trained at once, one process each (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--progress", action="store_true", help="progress bars for every run")


def run(args: argparse.Namespace) -> int:
    from training.experiment import LABELS, run_experiment

    overrides = list(args.overrides)
    overrides += [f"data.root={args.root!r}"] if args.root else []
    overrides += [f"data.cache={args.cache!r}"] if args.cache else []
    result = run_experiment(args.config, args.out, seeds=args.seeds, folds=args.folds, methods=args.methods,
                            overrides=overrides, tune=args.tune, workers=args.workers,
                            progress=args.progress)
    print((args.out / "table.md").read_text())
    print(f"results: {args.out}/table.md, table.csv, runs.csv, comparison.png  ({len(result.rows)} runs; "
          f"methods: {', '.join(LABELS.get(t['method'], t['method']) for t in result.table)})")
    return 0
