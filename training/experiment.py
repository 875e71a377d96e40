"""The comparison experiment (`pkdot experiment`): teacher, visual-only student, and a student per distillation
method, for several seeds on subject-independent folds; a table (markdown + CSV, mean ± std) and a bar chart.

Every run is an ordinary run folder under OUT/fold<F>/seed<S>/<name>; a finished run (metrics.json present) is
not redone, so an interrupted experiment resumes. PKDOT's k, λ and ε can be tuned first on the validation subjects
of the first fold (`tune`), never on a test fold.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import load_config
from training.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("none", "kd", "fitnet", "pkd", "smpkd", "rkd", "pkt", "pkdot")
LABELS = {"teacher": "teacher (video + privileged)", "none": "visual-only (no KD)", "kd": "logit KD (Hinton)",
          "fitnet": "FitNets", "pkd": "PKD / M2PKD (cosine)", "smpkd": "SMPKD (similarity matrix)",
          "rkd": "RKD (distance + angle)", "pkt": "PKT", "pkdot": "PKDOT (OT, ours)"}
# λ, k, ε; each list starts with the paper's value (k: the synthetic configs' default, as batches are 16, not 128)
TUNE_GRID = {"weight": (0.6, 1.2), "params.pkdot.k": (10, 20), "params.pkdot.eps": (0.01, 0.05)}


def tune_candidates(grid: dict[str, tuple], full: bool = False) -> list[tuple]:
    """Settings to try: the first value of every option, then each other value of one option at a time
    (1 + sum(len - 1) runs); `full`: every combination (prod(len) runs)."""
    if full:
        return list(itertools.product(*grid.values()))
    base = tuple(v[0] for v in grid.values())
    return [base] + [base[:i] + (v,) + base[i + 1:] for i, values in enumerate(grid.values()) for v in values[1:]]


@dataclass
class ExperimentResult:
    rows: list[dict]  # one per run: method, fold, seed, test metrics
    table: list[dict]  # one per method: mean and std of each metric
    out: Path


def _run(config: Path | None, overrides: list[str], out: Path, progress: bool) -> dict:
    from training.train import run_training

    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = load_config(config, [*overrides, f"out={str(out)!r}"])
    return run_training(cfg, progress=progress)


def tune_pkdot(config: Path | None, common: list[str], teacher: Path, out: Path, progress: bool, *,
               grid: dict[str, tuple] | None = None, full_grid: bool = False, workers: int = 1) -> list[str]:
    """PKDOT's λ, k and ε (`grid`, keys under `kd.`; see tune_candidates) scored on one fold's validation subjects
    only; writes tuning/grid.csv and chosen.json and returns the winning overrides."""
    grid = grid or TUNE_GRID
    settings = tune_candidates(grid, full_grid)
    candidates, jobs = [], []
    for values in settings:
        sets = [f"kd.{k}={v!r}" for k, v in zip(grid, values, strict=True)]
        name = "-".join(f"{k.split('.')[-1]}{v}" for k, v in zip(grid, values, strict=True))
        candidates.append((name, sets))
        jobs.append((config, [*common, "kind='student'", "kd.method='pkdot'", f"teacher_run={str(teacher)!r}",
                           *sets], out / f"pkdot-{name}", progress))
    summaries = _run_all(jobs, workers)
    metric = summaries[0]["primary_metric"]
    scores = [s["val"][metric] for s in summaries]
    for (name, _), score in zip(candidates, scores, strict=True):
        log.info("tuning pkdot %s: validation %s %.4f", name, metric, score)
    best = int(np.argmax(scores))  # ties keep the earlier setting, nearer the paper's
    lines = [",".join([*grid, f"val_{metric}"])]
    lines += [",".join([*(str(v) for v in values), f"{score:.6f}"])
              for values, score in zip(settings, scores, strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.csv").write_text("\n".join(lines) + "\n")
    (out / "chosen.json").write_text(json.dumps({"overrides": candidates[best][1], "val_score": scores[best],
                                                  "metric": f"val_{metric}"}, indent=2) + "\n")
    return candidates[best][1]


def _init_worker() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run_all(jobs: list[tuple], workers: int) -> list[dict]:
    """Runs (config, overrides, out, progress) jobs, `workers` at a time in separate processes (1: in this one)."""
    if workers <= 1:
        return [_run(*job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        return list(pool.map(_run, *zip(*jobs, strict=True)))


def run_experiment(config: Path | None, out: Path, *, seeds: list[int], folds: list[int],
                   methods: list[str] | None = None, overrides: list[str] | None = None, tune: bool = False,
                   tune_grid: dict[str, tuple] | None = None, workers: int = 2,
                   progress: bool = False) -> ExperimentResult:
    """`workers` runs train at once, one process each (with cfg.threads torch threads): on a small CPU, two
    single-threaded runs side by side finish sooner than one run with two threads."""
    methods = list(methods or METHODS)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    base = load_config(config, overrides or [])
    if base.task == "affect":
        methods = [m for m in methods if m != "kd"]  # logit KD does not apply to regression
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    repeats = list(itertools.product(folds, seeds))
    common = {(f, s): [*(overrides or []), f"data.fold={f}", f"seed={s}"] for f, s in repeats}
    teacher_dir = {(f, s): out / f"fold{f}" / f"seed{s}" / "teacher" for f, s in repeats}
    teachers = _run_all([(config, [*common[r], "kind='teacher'"], teacher_dir[r], progress) for r in repeats],
                        workers)
    rows = [_row("teacher", f, s, summary) for (f, s), summary in zip(repeats, teachers, strict=True)]
    pkdot_sets: list[str] = []
    if tune and "pkdot" in methods:
        pkdot_sets = tune_pkdot(config, common[repeats[0]], teacher_dir[repeats[0]], out / "tuning", progress,
                                grid=tune_grid, workers=workers)
    jobs, keys = [], []
    for r in repeats:
        for method in methods:
            extra = pkdot_sets if method == "pkdot" else []
            jobs.append((config, [*common[r], "kind='student'", f"kd.method={method!r}",
                                  f"teacher_run={str(teacher_dir[r])!r}", *extra],
                         teacher_dir[r].parent / f"student-{method}", progress))
            keys.append((method, *r))
    for (method, fold, seed), summary in zip(keys, _run_all(jobs, workers), strict=True):
        rows.append(_row(method, fold, seed, summary))
        log.info("fold %d seed %d %-7s test %s %.4f", fold, seed, method, summary["primary_metric"],
                 summary["test"][summary["primary_metric"]])
    table = summarise(rows, base.task)
    write_outputs(rows, table, out, base.task, time.perf_counter() - started,
                  {"seeds": seeds, "folds": folds, "pkdot": pkdot_sets, "dataset": base.data.root,
                   "workers": workers})
    return ExperimentResult(rows, table, out)


def _row(method: str, fold: int, seed: int, summary: dict) -> dict:
    return {"method": method, "fold": fold, "seed": seed, "best_epoch": summary["best_epoch"],
            **{f"test_{k}": v for k, v in summary["test"].items() if k not in ("loss", "neg_loss")},
            **{f"val_{k}": v for k, v in summary["val"].items() if k not in ("loss", "neg_loss")}}


def metric_names(task: str) -> list[str]:
    if task == "pain":
        return ["accuracy", "macro_f1", "mae", "qwk"]
    return ["ccc_mean", "ccc_valence", "ccc_arousal", "rmse_valence", "rmse_arousal"]


def summarise(rows: list[dict], task: str) -> list[dict]:
    table = []
    for method in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == method]
        entry = {"method": method, "runs": len(runs)}
        for m in metric_names(task):
            values = np.array([r[f"test_{m}"] for r in runs], float)
            entry[f"{m}_mean"], entry[f"{m}_std"] = float(values.mean()), float(values.std())
        table.append(entry)
    return table


def write_outputs(rows: list[dict], table: list[dict], out: Path, task: str, seconds: float, info: dict) -> None:
    from training import plots

    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    names = metric_names(task)
    scale = 100.0 if task == "pain" else 1.0
    lines = [f"| method | runs | {' | '.join(names)} |", "|---|---|" + "---|" * len(names)]
    for t in table:
        cells = [f"{scale * t[f'{m}_mean']:.1f} ± {scale * t[f'{m}_std']:.1f}" if task == "pain" and m != "mae"
                 and m != "qwk" else f"{t[f'{m}_mean']:.3f} ± {t[f'{m}_std']:.3f}" for m in names]
        lines.append(f"| {LABELS.get(t['method'], t['method'])} | {t['runs']} | {' | '.join(cells)} |")
    note = (f"\nTest-fold metrics, mean ± std over {len(info['folds'])} fold(s) × {len(info['seeds'])} seed(s) "
            f"(subject-independent; epochs chosen on validation subjects). Wall time {seconds / 60:.1f} min.\n")
    (out / "table.md").write_text("\n".join(lines) + "\n" + note)
    (out / "experiment.json").write_text(json.dumps({**info, "task": task, "seconds": seconds}, indent=2) + "\n")
    primary = "accuracy" if task == "pain" else "ccc_mean"
    plots.method_bars([{"method": t["method"], "mean": t[f"{primary}_mean"], "std": t[f"{primary}_std"]}
                       for t in table], primary, out / "comparison.png", f"{task}: test {primary} by method")
