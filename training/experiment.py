"""The comparison experiment (`pkdot experiment`): teacher, visual-only student, and a student per distillation
method, for several seeds on subject-independent folds; a table (markdown + CSV, mean ± std) and a bar chart, and
each method's difference to the visual-only student paired by (fold, seed), with confidence intervals and the share
of the teacher gap it recovers (paired.csv, paired.png; training/stats.py).

Every run is an ordinary run folder under OUT/fold<F>/seed<S>/<name>; a finished run (metrics.json present) is
not redone, so an interrupted experiment resumes. PKDOT's k, λ and ε can be tuned first on the validation subjects
of the first fold (`tune`), never on a test fold.
"""

from __future__ import annotations

import csv
import ctypes
import itertools
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import stats
from training.config import load_config
from training.errors import ConfigError

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies

METHODS = ("none", "kd", "fitnet", "pkd", "smpkd", "rkd", "pkt", "pkdot")
LABELS = {"teacher": "teacher (video + privileged)", "none": "visual-only (no KD)", "kd": "logit KD (Hinton)",
          "fitnet": "FitNets", "pkd": "PKD / M2PKD (cosine)", "smpkd": "SMPKD (similarity matrix)",
          "rkd": "RKD (distance + angle)", "pkt": "PKT", "pkdot": "PKDOT (OT, ours)"}
PRIMARY = {"pain": "accuracy", "affect": "ccc_mean"}
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
    paired: list[dict] = field(default_factory=list)  # one per (metric, KD method): see stats.paired_comparison


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


def _init_worker(parent: int | None = None) -> None:
    """Each pool process: logging, and it ends with the experiment's process (`parent`), however that ends (SIGTERM,
    SIGKILL, a crash): on Linux the kernel sends it SIGTERM when its parent dies, instead of leaving a run that
    trains on for no one."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl: the process may outlive its parent, as before
        return
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _run_all(jobs: list[tuple], workers: int, done: Callable[[int, dict], None] | None = None,
             after: list[int | None] | None = None) -> list[dict]:
    """Runs (config, overrides, out, progress) jobs, `workers` at a time in separate processes (1: in this one);
    `done(index, summary)` is called as each job finishes. `after[i]`: the index of a job that must finish before
    job i starts (a student waits for its fold's teacher, not for every teacher); jobs start in list order as far
    as that allows, and must come after the job they wait for."""
    after = after or [None] * len(jobs)
    if any(a is not None and not 0 <= a < i for i, a in enumerate(after)):
        raise ValueError("a job can only wait for a job listed before it")
    results: list[dict] = [{} for _ in jobs]
    if workers <= 1:
        for i, job in enumerate(jobs):
            results[i] = _run(*job)
            if done:
                done(i, results[i])
        return results
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    waiting = {i: a for i, a in enumerate(after)}
    finished: set[int] = set()
    # spawn: a forked child would inherit torch's thread pools (and any MediaPipe graph) in whatever state they are
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(os.getpid(),),
                             mp_context=get_context("spawn")) as pool:
        running: dict = {}
        while waiting or running:
            for i in [i for i, a in waiting.items() if a is None or a in finished]:  # in list order
                del waiting[i]
                running[pool.submit(_run, *jobs[i])] = i
            complete, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in complete:
                i = running.pop(future)
                results[i] = future.result()
                finished.add(i)
                if done:
                    done(i, results[i])
    return results


def progress_line(method: str, fold: int, seed: int, summary: dict, count: int, total: int, resumed: bool) -> str:
    """One finished run: `[3/18] fold 0 seed 1 pkdot    test accuracy 0.4120` (`(resumed)` when it was done
    before)."""
    metric = summary["primary_metric"]
    return (f"[{count}/{total}] fold {fold} seed {seed} {method:<7} test {metric} {summary['test'][metric]:.4f}"
            + (" (resumed)" if resumed else ""))


def run_experiment(config: Path | None, out: Path, *, seeds: list[int], folds: list[int],
                   methods: list[str] | None = None, overrides: list[str] | None = None, tune: bool = False,
                   tune_grid: dict[str, tuple] | None = None, workers: int = 2, progress: bool = False,
                   announce: Callable[[str], None] | None = None, teacher_per_seed: bool = False) -> ExperimentResult:
    """`workers` runs train at once, one process each (with cfg.threads torch threads): on a small CPU, two
    single-threaded runs side by side finish sooner than one run with two threads. `announce` gets a line per
    finished teacher and student run (default: the log).

    Each fold has one teacher (trained with the first seed, in OUT/fold<f>/teacher) that every seed's students
    distil from: the seeds measure the student's variance against a fixed teacher, as when one distils a given
    model. Its row is repeated for each seed so that every comparison stays paired by (fold, seed).
    teacher_per_seed=True trains a teacher per fold and seed instead (OUT/fold<f>/seed<s>/teacher)."""
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
    if teacher_per_seed:
        teacher_dir = {(f, s): out / f"fold{f}" / f"seed{s}" / "teacher" for f, s in repeats}
        trained = repeats
    else:
        teacher_dir = {(f, s): out / f"fold{f}" / "teacher" for f, s in repeats}
        trained = [(f, seeds[0]) for f in folds]
    total = len(trained) + len(repeats) * len(methods)
    finished = [0]
    say = announce or log.info

    def tracker(keys: list[tuple[str, int, int]], jobs: list[tuple]) -> Callable[[int, dict], None]:
        resumed = [(job[2] / "metrics.json").is_file() for job in jobs]

        def done(i: int, summary: dict) -> None:
            finished[0] += 1
            say(progress_line(*keys[i], summary, finished[0], total, resumed[i]))

        return done

    teacher_jobs = [(config, [*common[r], "kind='teacher'"], teacher_dir[r], progress) for r in trained]
    teacher_keys = [("teacher", *r) for r in trained]
    jobs, keys, after = [], [], []
    for r in repeats:
        for method in methods:
            jobs.append((config, [*common[r], "kind='student'", f"kd.method={method!r}",
                                  f"teacher_run={str(teacher_dir[r])!r}"],
                         out / f"fold{r[0]}" / f"seed{r[1]}" / f"student-{method}", progress))
            keys.append((method, *r))
            after.append(next(i for i, job in enumerate(teacher_jobs) if job[2] == teacher_dir[r]))
    if tune and "pkdot" in methods:  # every PKDOT student waits for the setting chosen on fold 0's teacher
        summaries = _run_all(teacher_jobs, workers, tracker(teacher_keys, teacher_jobs))
        pkdot_sets = tune_pkdot(config, common[repeats[0]], teacher_dir[repeats[0]], out / "tuning", progress,
                                grid=tune_grid, workers=workers)
        jobs = [(c, [*o, *pkdot_sets] if k[0] == "pkdot" else o, d, p)
                for (c, o, d, p), k in zip(jobs, keys, strict=True)]
        students = _run_all(jobs, workers, tracker(keys, jobs))
    else:  # one pool: a fold's students start as soon as its teacher is trained
        pkdot_sets = []
        both = teacher_jobs + jobs
        summaries = _run_all(both, workers, tracker(teacher_keys + keys, both), [None] * len(teacher_jobs) + after)
        summaries, students = summaries[:len(teacher_jobs)], summaries[len(teacher_jobs):]
    teachers = dict(zip((teacher_dir[r] for r in trained), summaries, strict=True))
    rows = [_row("teacher", f, s, teachers[teacher_dir[f, s]]) for f, s in repeats]
    for (method, fold, seed), summary in zip(keys, students, strict=True):
        rows.append(_row(method, fold, seed, summary))
    table = summarise(rows, base.task)
    paired = stats.paired_table(rows, paired_metrics(base.task))
    write_outputs(rows, table, out, base.task, time.perf_counter() - started,
                  {"seeds": seeds, "folds": folds, "pkdot": pkdot_sets, "dataset": base.data.root,
                   "workers": workers, "teacher": "per fold and seed" if teacher_per_seed else
                   f"one per fold (seed {seeds[0]}), shared by every seed's students"}, paired)
    return ExperimentResult(rows, table, out, paired)


def _row(method: str, fold: int, seed: int, summary: dict) -> dict:
    return {"method": method, "fold": fold, "seed": seed, "best_epoch": summary["best_epoch"],
            **{f"test_{k}": v for k, v in summary["test"].items() if k not in ("loss", "neg_loss")},
            **{f"val_{k}": v for k, v in summary["val"].items() if k not in ("loss", "neg_loss")}}


def metric_names(task: str) -> list[str]:
    """Test metrics of the table; runs written before a metric existed simply lack it."""
    if task == "pain":
        return ["accuracy", "macro_f1", "mae", "qwk", "binary_accuracy", "spearman"]
    return ["ccc_mean", "ccc_valence", "ccc_arousal", "rmse_valence", "rmse_arousal"]


def paired_metrics(task: str) -> list[str]:
    """Metrics compared pair by pair against the visual-only student: the primary one, and for pain the binary
    (BL1 vs PA4) accuracy when the runs have it."""
    return [PRIMARY[task], "binary_accuracy"] if task == "pain" else [PRIMARY[task]]


def _percent(task: str, metric: str) -> bool:
    return task == "pain" and metric in ("accuracy", "macro_f1", "binary_accuracy")


def summarise(rows: list[dict], task: str) -> list[dict]:
    """Mean and std of each test metric per method, over the runs that have it."""
    table = []
    for method in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == method]
        entry = {"method": method, "runs": len(runs)}
        for m in metric_names(task):
            values = np.array([r[f"test_{m}"] for r in runs if f"test_{m}" in r], float)
            if len(values):
                entry[f"{m}_mean"], entry[f"{m}_std"] = float(values.mean()), float(values.std())
        table.append(entry)
    return table


def _interval(low: float, high: float, scale: float, digits: int) -> str:
    return f"[{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def paired_markdown(paired: list[dict], task: str) -> str:
    """The paired comparison as markdown tables, one per metric: the mean difference to the visual-only student,
    its 95 % intervals (t and bootstrap) and the fraction of the teacher gap recovered."""
    if not paired:
        return ""
    parts = []
    for metric in dict.fromkeys(e["metric"] for e in paired):
        entries = [e for e in paired if e["metric"] == metric]
        pct = _percent(task, metric)
        scale, digits, unit = (100.0, 1, "percentage points") if pct else (1.0, 3, metric.split("_")[0].upper())
        lines = [f"Paired difference to the visual-only student, test {metric} ({unit}; same fold and seed):", "",
                 "| method | pairs | Δ mean | 95 % CI (t) | 95 % CI (bootstrap) | gap recovered [95 % CI] |",
                 "|---|---|---|---|---|---|"]
        for e in entries:
            if e["pairs"] == 0:
                cells = ["no pairs"] * 4
            else:
                one = e["pairs"] < 2
                delta = f"{scale * e['delta_mean']:+.{digits}f}"
                t_ci = "one pair: no interval" if one else _interval(e["t_low"], e["t_high"], scale, digits)
                b_ci = "one pair: no interval" if one else _interval(e["boot_low"], e["boot_high"], scale, digits)
                if not math.isfinite(e["gap_recovered"]):
                    gap = "undefined (no teacher gap)"
                elif e["gap_pairs"] < 2 or not math.isfinite(e["gap_low"]):
                    gap = f"{100 * e['gap_recovered']:.0f} % (one pair: no interval)" if e["gap_pairs"] < 2 \
                        else f"{100 * e['gap_recovered']:.0f} % [no interval]"
                else:
                    gap = f"{100 * e['gap_recovered']:.0f} % [{100 * e['gap_low']:.0f}, {100 * e['gap_high']:.0f}]"
                cells = [delta, t_ci, b_ci, gap]
            lines.append(f"| {LABELS.get(e['method'], e['method'])} | {e['pairs']} | {' | '.join(cells)} |")
        gaps = [e["teacher_gap"] for e in entries if math.isfinite(e["teacher_gap"])]
        if gaps:
            lines += ["", f"Teacher − visual-only: {scale * gaps[0]:+.{digits}f}. Gap recovered = mean(method − "
                          "visual-only) / mean(teacher − visual-only); bootstrap intervals resample the (fold, seed) "
                          f"pairs ({stats.RESAMPLES:,} resamples, seed {stats.SEED})."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


def write_outputs(rows: list[dict], table: list[dict], out: Path, task: str, seconds: float, info: dict,
                  paired: list[dict] | None = None) -> None:
    """runs.csv, table.csv, table.md (mean ± std, then the paired comparison), paired.csv, experiment.json,
    comparison.png and paired.png."""
    from training import plots

    paired = paired if paired is not None else stats.paired_table(rows, paired_metrics(task))
    _write_csv(out / "runs.csv", rows)
    _write_csv(out / "table.csv", table)
    names = [m for m in metric_names(task) if any(f"{m}_mean" in t for t in table)]
    lines = [f"| method | runs | {' | '.join(names)} |", "|---|---|" + "---|" * len(names)]
    for t in table:
        cells = ["–" if f"{m}_mean" not in t
                 else f"{100 * t[f'{m}_mean']:.1f} ± {100 * t[f'{m}_std']:.1f}" if _percent(task, m)
                 else f"{t[f'{m}_mean']:.3f} ± {t[f'{m}_std']:.3f}" for m in names]
        lines.append(f"| {LABELS.get(t['method'], t['method'])} | {t['runs']} | {' | '.join(cells)} |")
    note = (f"\nTest-fold metrics, mean ± std over {len(info['folds'])} fold(s) × {len(info['seeds'])} seed(s) "
            f"(subject-independent; epochs chosen on validation subjects). Wall time {seconds / 60:.1f} min.\n")
    paired_md = paired_markdown(paired, task)
    (out / "table.md").write_text("\n".join(lines) + "\n" + note + (f"\n{paired_md}" if paired_md else ""))
    if paired:
        _write_csv(out / "paired.csv", paired)
    (out / "experiment.json").write_text(json.dumps({**info, "task": task, "seconds": seconds,
                                                     "paired": stats.jsonable(paired)}, indent=2) + "\n")
    primary = PRIMARY[task]
    plots.method_bars([{"method": t["method"], "mean": t[f"{primary}_mean"], "std": t[f"{primary}_std"]}
                       for t in table], primary, out / "comparison.png", f"{task}: test {primary} by method")
    forest = [e for e in paired if e["metric"] == primary]
    if forest:
        scale = 100.0 if _percent(task, primary) else 1.0
        unit = "percentage points" if scale == 100.0 else primary.split("_")[0].upper()
        plots.paired_forest([{**e, "label": LABELS.get(e["method"], e["method"])} for e in forest],
                            out / "paired.png", f"{task}: test {primary}, method − visual-only (paired)",
                            f"Δ {primary} ({unit})", scale)
