"""Distil a teacher into a visual-only student with PKDOT or a baseline (--kd)."""

from __future__ import annotations

import argparse

from training.commands.common import add_run_arguments, run_kind

KD_METHODS = ["pkdot", "none", "kd", "fitnet", "pkd", "smpkd", "rkd", "pkt"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, "student")
    p.add_argument("--kd", choices=KD_METHODS, help="distillation loss (default from the config: pkdot)")
    p.add_argument("--tnet", dest="tnet_run", help="T-Net run folder, for the paper's student (model.name = "
                   "'paper_student')")


def run(args: argparse.Namespace) -> int:
    return run_kind(args, "student")
