"""Evaluate a finished run's best model on its validation and test subjects (or another fold/dataset root)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a finished run folder (config.json + best.pt)")
    p.add_argument("--data", dest="root", help="dataset root (default: the run's)")
    p.add_argument("--cache", help="face-crop cache (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_run

    result = evaluate_run(args.run, root=args.root, cache=args.cache)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for part in ("val", "test"):
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in result[part].items() if k != "neg_loss")
        print(f"{part:5s} ({result['counts'][part]} samples)  {metrics}")
    return 0
