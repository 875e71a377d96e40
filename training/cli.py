"""The `pkdot` command line.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and ``run(args) -> int``.
Those modules must not import torch at import time (``pkdot serve`` works with only the ``serve`` extra installed):
heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pkdot_contract import __version__
from training.errors import PKDOTError

# name -> (module, one-line help). The order is the pipeline's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("training.data.synth.command", "write a synthetic dataset in a real release layout"),
    "prepare": ("training.data.prepare", "detect and crop faces of a dataset into a cache (resumable)"),
    "train-teacher": ("training.commands.train_teacher", "train the multimodal teacher"),
    "train-tnet": ("training.commands.train_tnet", "train the T-Net (visual -> privileged features)"),
    "distill": ("training.commands.distill", "distil the teacher into a visual-only student (--kd METHOD)"),
    "evaluate": ("training.commands.evaluate", "evaluate a finished run on its validation and test subjects"),
    "experiment": ("training.commands.experiment", "compare teacher, visual-only and every KD method"),
    "export": ("training.export.command", "export a run as a checked model folder (ONNX, Triton, manifest)"),
    "serve": ("service.command", "run the inference service (REST + WebSocket)"),
    "stream": ("service.client.command", "stream a webcam or a video file to a server and print results live"),
    "bench": ("benchmarks.command", "measure speed, scale and memory: models, pipeline, streams, batching, start-up"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkdot",
        description="PKDOT: privileged knowledge distillation with optimal transport, from datasets to a service.",
    )
    parser.add_argument("--version", action="version", version=f"pkdot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args) or 0)
    except PKDOTError as exc:
        print(f"pkdot {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pkdot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
