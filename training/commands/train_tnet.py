"""Train the T-Net that hallucinates privileged features from a teacher's visual features (MMD or MSE)."""

from __future__ import annotations

import argparse

from training.commands.common import add_run_arguments, run_kind


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, "tnet")


def run(args: argparse.Namespace) -> int:
    return run_kind(args, "tnet")
