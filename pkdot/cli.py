"""The `pkdot` command line.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and ``run(args) -> int``, and
is imported here by name. Those modules import only the standard library and `pkdot_contract` at import time, so
that `pkdot --help` works with any extra installed: what a command needs (torch, FastAPI, ...) is imported inside
``run``, and installed by the extra named in `COMMANDS` (`pip install -e '.[train]'` runs every training command).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from benchmarks import command as bench
from pkdot_contract import __version__
from service import command as serve
from service.client import command as stream
from training.commands import distill, evaluate, experiment, train_teacher, train_tnet
from training.data import prepare
from training.data.synth import command as synth
from training.errors import PKDOTError
from training.export import command as export


@dataclass(frozen=True)
class Command:
    module: ModuleType  # add_arguments(parser), run(args) -> int
    help: str
    extras: tuple[str, ...]  # the pyproject.toml extras that install what `run` imports


# The order is the pipeline's order.
COMMANDS: dict[str, Command] = {
    "synth": Command(synth, "write a synthetic dataset in a real release layout", ("train",)),
    "prepare": Command(prepare, "detect and crop faces of a dataset into a cache (resumable)", ("train",)),
    "train-teacher": Command(train_teacher, "train the multimodal teacher", ("train",)),
    "train-tnet": Command(train_tnet, "train the T-Net (visual -> privileged features)", ("train",)),
    "distill": Command(distill, "distil the teacher into a visual-only student (--kd METHOD)", ("train",)),
    "evaluate": Command(evaluate, "evaluate a finished run on its validation and test subjects", ("train",)),
    "experiment": Command(experiment, "compare teacher, visual-only and every KD method", ("train",)),
    "export": Command(export, "export a run as a checked model folder (ONNX, Triton, manifest)", ("train",)),
    "serve": Command(serve, "run the inference service (REST + WebSocket)", ("serve",)),
    "stream": Command(stream, "stream a webcam or a video file to a server and print results live", ("serve",)),
    "bench": Command(bench, "measure speed, scale and memory: models, pipeline, streams, batching, start-up",
                     ("serve", "train")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkdot",
        description="PKDOT: privileged knowledge distillation with optimal transport, from datasets to a service.",
    )
    parser.add_argument("--version", action="version", version=f"pkdot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        doc = (command.module.__doc__ or command.help).strip().splitlines()[0]
        p = sub.add_parser(name, help=command.help, description=doc)
        command.module.add_arguments(p)
        p.set_defaults(_command=command)
    return parser


def _missing_extra(name: str, command: Command, exc: ModuleNotFoundError) -> str:
    extras = ",".join(command.extras)
    return (f"pkdot {name}: error: {exc} — this command needs the {extras} extra: "
            f"pip install -c constraints.txt -e '.[{extras}]'")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command: Command = args._command
    try:
        return int(command.module.run(args) or 0)
    except PKDOTError as exc:
        print(f"pkdot {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in {"pkdot", "pkdot_contract", "training", "service",
                                                             "benchmarks"}:
            raise  # a bug of the project, not a missing extra
        print(_missing_extra(args.command, command, exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pkdot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
