"""Arguments shared by the training subcommands and their translation into a RunConfig."""

from __future__ import annotations

import argparse
from pathlib import Path

from pkdot_contract.tasks import TASKS


def add_run_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--config", type=Path, help="TOML file of the run (see configs/); flags below override it")
    p.add_argument("--task", choices=TASKS, help="pain (BioVid) or affect (Aff-Wild2)")
    p.add_argument("--data", dest="root", help="dataset root in its release layout")
    p.add_argument("--cache", help="face-crop cache of that root, from `pkdot prepare`")
    p.add_argument("--out", help="run folder (resumed when it holds an unfinished run)")
    if kind in ("tnet", "student"):
        p.add_argument("--teacher", dest="teacher_run", help="the teacher's run folder")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--fold", type=int, help="test fold of the subject-independent split")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any option, e.g. --set optim.lr=3e-4 --set kd.params.k=20 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, kind: str):
    from training.config import load_config

    top = {"kind": kind, "task": args.task, "out": args.out, "teacher_run": getattr(args, "teacher_run", None),
           "seed": args.seed, "device": args.device}
    nested = {"data.root": args.root, "data.cache": args.cache, "optim.epochs": args.epochs, "data.fold": args.fold}
    extra = [f"{k}={v!r}" for k, v in nested.items() if v is not None]
    extra += [f"kd.method={args.kd!r}"] if getattr(args, "kd", None) else []
    extra += [f"tnet_run={args.tnet_run!r}"] if getattr(args, "tnet_run", None) else []
    return load_config(args.config, [*extra, *args.overrides], **top)


def print_summary(summary: dict, out: str) -> None:
    primary = summary["primary_metric"]
    line = f"run folder: {out}  best epoch {summary['best_epoch']}"
    for part in ("val", "test"):
        if part in summary:
            line += f"  {part} {primary} {summary[part][primary]:.4f}"
    print(line)


def run_kind(args: argparse.Namespace, kind: str) -> int:
    """Train one run of `kind` (teacher, tnet or student) from the parsed arguments and print its summary."""
    from training.train import run_training

    cfg = config_from_args(args, kind)
    print_summary(run_training(cfg, progress=not args.no_progress), cfg.out)
    return 0
