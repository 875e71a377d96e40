"""Train the T-Net that hallucinates privileged features from a teacher's visual features (MMD or MSE)."""

from __future__ import annotations

import argparse

from training.commands.common import add_run_arguments, config_from_args, print_summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, "tnet")


def run(args: argparse.Namespace) -> int:
    from training.train import run_training

    cfg = config_from_args(args, "tnet")
    print_summary(run_training(cfg, progress=not args.no_progress), cfg.out)
    return 0
