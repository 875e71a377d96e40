"""Distil a teacher into a visual-only student with PKDOT or a baseline (--kd)."""

from __future__ import annotations

import argparse

from training.commands.common import add_run_arguments, config_from_args, print_summary

KD_METHODS = ["pkdot", "none", "kd", "fitnet", "pkd", "smpkd", "rkd", "pkt"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, "student")
    p.add_argument("--kd", choices=KD_METHODS, help="distillation loss (default from the config: pkdot)")
    p.add_argument("--tnet", dest="tnet_run", help="T-Net run folder, for the paper's student (model.name = "
                   "'paper_student')")


def run(args: argparse.Namespace) -> int:
    from training.train import run_training

    cfg = config_from_args(args, "student")
    print_summary(run_training(cfg, progress=not args.no_progress), cfg.out)
    return 0
