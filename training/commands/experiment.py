"""Run the comparison: teacher, visual-only and every distillation method, over seeds and subject folds."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIGS = (Path("configs/synthetic/pain.toml"), Path("configs/synthetic/affect.toml"))
DEFAULT_SEEDS = (0, 1, 2)
QUICK_METHODS = ("none", "pkdot")  # --quick: the teacher, visual-only and PKDOT


@dataclass(frozen=True)
class PlannedExperiment:
    config: Path
    out: Path  # OUT/<task>
    folds: list[int]
    seeds: list[int]
    methods: list[str] | None  # None: every method


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, action="append", dest="configs",
                   help="TOML base config of a task, repeatable (default: configs/synthetic/pain.toml and "
                        "configs/synthetic/affect.toml)")
    p.add_argument("--data", dest="root", help="dataset root (overrides the config)")
    p.add_argument("--cache", help="face-crop cache (overrides the config)")
    p.add_argument("--out", type=Path, default=Path("runs/experiment"),
                   help="experiment folder; each task goes into OUT/<task> (resumable; default runs/experiment)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2)")
    p.add_argument("--folds", type=int, nargs="+", help="test folds (default: every fold of the config)")
    p.add_argument("--quick", action="store_true",
                   help="fold 0, seed 0, the teacher, visual-only and PKDOT only (unless --folds, --seeds or "
                        "--methods say otherwise): a few minutes on 2 cores")
    p.add_argument("--methods", nargs="+",
                   help="subset of: none kd fitnet pkd smpkd rkd pkt pkdot (default all; --quick: none pkdot)")
    p.add_argument("--tune", action="store_true",
                   help="first tune PKDOT's λ, k and ε on the first fold's validation subjects (never a test fold)")
    p.add_argument("--teacher-per-seed", action="store_true",
                   help="train a teacher for every fold and seed (default: one per fold, shared by the seeds)")
    p.add_argument("--workers", type=int, default=2, help="runs trained at once, one process each (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--progress", action="store_true", help="progress bars for every run")


def overrides_of(args: argparse.Namespace) -> list[str]:
    """--set items, then --data and --cache as config overrides."""
    overrides = list(args.overrides)
    overrides += [f"data.root={args.root!r}"] if args.root else []
    overrides += [f"data.cache={args.cache!r}"] if args.cache else []
    return overrides


def plan(args: argparse.Namespace) -> list[PlannedExperiment]:
    """The experiments to run, without training: one per config (default both synthetic tasks) into OUT/<task>,
    over the given folds (default every fold of the config, --quick fold 0), seeds (default 0 1 2, --quick 0) and
    methods (default all, --quick visual-only and PKDOT)."""
    from training.config import load_config
    from training.errors import ConfigError

    overrides = overrides_of(args)
    planned, tasks = [], set()
    for config in args.configs or DEFAULT_CONFIGS:
        cfg = load_config(config, overrides)
        if cfg.task in tasks:
            raise ConfigError(f"two configs of task {cfg.task!r}: each task writes OUT/<task>; run them separately")
        tasks.add(cfg.task)
        folds = args.folds or ([0] if args.quick else list(range(cfg.data.folds)))
        seeds = args.seeds or ([0] if args.quick else list(DEFAULT_SEEDS))
        methods = args.methods or (list(QUICK_METHODS) if args.quick else None)
        planned.append(PlannedExperiment(Path(config), args.out / cfg.task, list(folds), list(seeds), methods))
    return planned


def run(args: argparse.Namespace) -> int:
    from training.experiment import LABELS, run_experiment

    started = time.perf_counter()
    for item in plan(args):
        print(f"{item.out.name}: {item.config}, folds {' '.join(map(str, item.folds))}, seeds "
              f"{' '.join(map(str, item.seeds))} -> {item.out}", flush=True)
        result = run_experiment(item.config, item.out, seeds=item.seeds, folds=item.folds, methods=item.methods,
                                overrides=overrides_of(args), tune=args.tune, workers=args.workers,
                                progress=args.progress, announce=lambda line: print(line, flush=True),
                                teacher_per_seed=args.teacher_per_seed)
        print((item.out / "table.md").read_text())
        print(f"results: {item.out}/table.md, table.csv, runs.csv, paired.csv, comparison.png, paired.png  "
              f"({len(result.rows)} runs; methods: "
              f"{', '.join(LABELS.get(t['method'], t['method']) for t in result.table)})", flush=True)
    print(f"total wall time: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return 0
