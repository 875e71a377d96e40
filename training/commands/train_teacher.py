"""Train the multimodal teacher (face video + the privileged modality) on a dataset root."""

from __future__ import annotations

import argparse

from training.commands.common import add_run_arguments, run_kind


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, "teacher")


def run(args: argparse.Namespace) -> int:
    return run_kind(args, "teacher")
