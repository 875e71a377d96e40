"""`pkdot experiment` end to end on tiny synthetic data: tuning on validation only, the table, the paired
comparison, resuming, the report; and the plan of the command line without training."""

from __future__ import annotations

import argparse
import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkdot.cli import build_parser, main
from tests.training.test_training import TINY_MODELS
from training.commands.experiment import plan
from training.errors import ConfigError
from training.experiment import TUNE_GRID, _run_all, run_experiment, tune_candidates
from training.experiment_report import DISCUSSION, report
from training.structure import main as structure_main
from training.structure import measure, table

GRID = {"weight": (0.6, 1.2), "params.pkdot.k": (3,)}


def tiny_overrides(root: Path, cache: Path) -> list[str]:
    return [f"data.root={str(root)!r}", f"data.cache={str(cache)!r}", "data.num_frames=4", "data.folds=3",
            "data.val_fraction=0.5", "data.channels=['gsr', 'emg_trapezius']", "optim.epochs=1",
            "optim.batch_size=4", "optim.bn_recalibration_batches=2", "kd.params={'pkdot': {'k': 3}}", *TINY_MODELS]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["experiment", *argv])


def test_plan_defaults_to_both_tasks_every_fold_and_three_seeds() -> None:
    planned = plan(parse())
    assert [(p.config.name, p.out) for p in planned] == [
        ("pain.toml", Path("runs/experiment/pain")), ("affect.toml", Path("runs/experiment/affect"))]
    from training.config import load_config

    for p in planned:
        assert p.folds == list(range(load_config(p.config, []).data.folds)) and p.seeds == [0, 1, 2]
    assert not parse().tune


def test_plan_quick_and_explicit_choices() -> None:
    quick = plan(parse("--quick", "--out", "x"))
    assert [(p.out, p.folds, p.seeds, p.methods) for p in quick] == [
        (Path("x/pain"), [0], [0], ["none", "pkdot"]), (Path("x/affect"), [0], [0], ["none", "pkdot"])]
    one = plan(parse("--config", "configs/synthetic/affect.toml", "--quick", "--seeds", "4", "5", "--methods", "rkd"))
    assert [(p.config, p.out, p.folds, p.seeds, p.methods) for p in one] == [
        (Path("configs/synthetic/affect.toml"), Path("runs/experiment/affect"), [0], [4, 5], ["rkd"])]
    assert plan(parse())[0].methods is None  # every method
    folds = plan(parse("--config", "configs/synthetic/pain.toml", "--set", "data.folds=3"))
    assert folds[0].folds == [0, 1, 2]
    with pytest.raises(ConfigError, match="two configs"):
        plan(parse("--config", "configs/synthetic/pain.toml", "--config", "configs/synthetic/pain.toml"))


def test_tune_candidates() -> None:
    grid = {"a": (1, 2, 3), "b": (10, 20)}
    assert tune_candidates(grid) == [(1, 10), (2, 10), (3, 10), (1, 20)]  # one option changed at a time
    assert len(tune_candidates(grid, full=True)) == 6
    assert tune_candidates(TUNE_GRID)[0] == (0.6, 10, 0.01)  # the paper's λ and ε come first: they win ties


@pytest.fixture(scope="module")
def experiment(tiny_biovid, tmp_path_factory) -> Path:
    root, cache = tiny_biovid
    out = tmp_path_factory.mktemp("experiment") / "pain"
    lines: list[str] = []
    run_experiment(Path("configs/synthetic/pain.toml"), out, seeds=[0], folds=[0, 1], methods=["none", "pkdot"],
                   overrides=tiny_overrides(root, cache), tune=True, tune_grid=GRID, workers=2,
                   announce=lines.append)
    (out / "progress.txt").write_text("\n".join(lines))
    return out


def test_tables_and_runs(experiment: Path) -> None:
    rows = list(csv.DictReader((experiment / "runs.csv").open()))
    assert sorted((r["method"], r["fold"]) for r in rows) == [
        (m, f) for m in ("none", "pkdot", "teacher") for f in ("0", "1")]
    table = list(csv.DictReader((experiment / "table.csv").open()))
    assert [t["method"] for t in table] == ["teacher", "none", "pkdot"]
    for t in table:  # mean and std over the two folds, recomputed from the runs
        runs = [float(r["test_accuracy"]) for r in rows if r["method"] == t["method"]]
        assert float(t["accuracy_mean"]) == pytest.approx(sum(runs) / 2, abs=1e-6)
    assert "PKDOT" in (experiment / "table.md").read_text()
    assert (experiment / "comparison.png").stat().st_size > 5000
    for f in (0, 1):  # one teacher per fold, which the students of every seed distil
        assert (experiment / f"fold{f}" / "teacher" / "metrics.json").is_file()
        cfg = json.loads((experiment / f"fold{f}" / "seed0" / "student-pkdot" / "config.json").read_text())
        assert Path(cfg["teacher_run"]) == experiment / f"fold{f}" / "teacher"
        split = json.loads((experiment / f"fold{f}" / "seed0" / "student-pkdot" / "split.json").read_text())
        subjects = {part: {k.split("/")[0] for k in keys} for part, keys in split.items()}
        assert not subjects["test"] & (subjects["train"] | subjects["val"])


def test_paired_comparison_matches_the_runs(experiment: Path) -> None:
    rows = list(csv.DictReader((experiment / "runs.csv").open()))
    value = {(r["method"], r["fold"]): float(r["test_accuracy"]) for r in rows}
    paired = list(csv.DictReader((experiment / "paired.csv").open()))
    (e,) = [p for p in paired if p["metric"] == "accuracy"]
    diffs = [value[("pkdot", f)] - value[("none", f)] for f in ("0", "1")]
    gap = [value[("teacher", f)] - value[("none", f)] for f in ("0", "1")]
    assert e["method"] == "pkdot" and e["pairs"] == "2"
    assert float(e["delta_mean"]) == pytest.approx(sum(diffs) / 2, abs=1e-9)
    assert float(e["teacher_gap"]) == pytest.approx(sum(gap) / 2, abs=1e-9)
    if sum(gap) != 0:
        assert float(e["gap_recovered"]) == pytest.approx(sum(diffs) / sum(gap), abs=1e-9)
    low, high = float(e["boot_low"]), float(e["boot_high"])
    assert min(diffs) - 1e-9 <= low <= high <= max(diffs) + 1e-9
    assert float(e["t_low"]) <= float(e["delta_mean"]) <= float(e["t_high"])
    assert {p["metric"] for p in paired} <= {"accuracy", "binary_accuracy"}
    assert (experiment / "paired.png").stat().st_size > 5000
    assert "95 % CI (bootstrap)" in (experiment / "table.md").read_text()
    saved = json.loads((experiment / "experiment.json").read_text())["paired"]
    assert [(p["metric"], p["method"]) for p in saved] == [(p["metric"], p["method"]) for p in paired]
    assert not any(isinstance(v, float) and math.isnan(v) for p in saved for v in p.values())
    lines = (experiment / "progress.txt").read_text().splitlines()
    assert len(lines) == len(rows) and lines[-1].startswith(f"[{len(rows)}/{len(rows)}] fold ")


def test_tuning_uses_fold0_validation_and_the_students_use_its_choice(experiment: Path) -> None:
    grid = list(csv.DictReader((experiment / "tuning" / "grid.csv").open()))
    assert [(r["weight"], r["params.pkdot.k"]) for r in grid] == [("0.6", "3"), ("1.2", "3")]
    chosen = json.loads((experiment / "tuning" / "chosen.json").read_text())
    scores = [float(r["val_accuracy"]) for r in grid]
    assert chosen["val_score"] == pytest.approx(max(scores))
    best = grid[scores.index(max(scores))]
    for name in ("pkdot-weight0.6-k3", "pkdot-weight1.2-k3"):  # tuned on fold 0's validation subjects
        cfg = json.loads((experiment / "tuning" / name / "config.json").read_text())
        assert cfg["data"]["fold"] == 0 and cfg["kd"]["method"] == "pkdot"
    for f in (0, 1):
        cfg = json.loads((experiment / f"fold{f}" / "seed0" / "student-pkdot" / "config.json").read_text())
        assert cfg["kd"]["weight"] == float(best["weight"])
    assert json.loads((experiment / "experiment.json").read_text())["pkdot"] == chosen["overrides"]


def test_resumes_without_retraining(experiment: Path, tiny_biovid, capsys) -> None:
    root, cache = tiny_biovid
    finished = sorted(experiment.glob("**/metrics.json"))
    stamps = [p.stat().st_mtime_ns for p in finished]
    args = ["experiment", "--config", "configs/synthetic/pain.toml", "--out", str(experiment.parent), "--seeds", "0",
            "--folds", "0", "1", "--methods", "none", "pkdot", "--workers", "1"]
    for item in tiny_overrides(root, cache):
        args += ["--set", item]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    printed = capsys.readouterr().out
    assert "| PKDOT" in printed and "(resumed)" in printed and "total wall time" in printed


def test_report_keeps_the_discussion(experiment: Path, tmp_path: Path) -> None:
    doc = tmp_path / "experiments.md"
    doc.write_text(f"STALE-HEADER\n{DISCUSSION}\nHand-written reading of the numbers.\n")
    text = report(experiment.parent, doc)
    assert text == doc.read_text() and "STALE-HEADER" not in text.split(DISCUSSION)[0]
    assert text.endswith("Hand-written reading of the numbers.\n")
    assert "| PKDOT" in text and "PKDOT tuning" in text and "pkdot experiment --out runs/experiment" in text
    assert "gap recovered [95 % CI]" in text and "(experiments-pain-paired.png)" in text
    assert (tmp_path / "experiments-pain.png").is_file() and (tmp_path / "experiments-pain-paired.png").is_file()


def test_structure_measures_read_the_experiment_folder(experiment: Path) -> None:
    rows = measure(experiment)
    assert sorted((r["method"], r["fold"], r["seed"]) for r in rows) == [
        (m, f, 0) for m in ("none", "pkdot") for f in (0, 1)]
    for r in rows:
        assert -1.0 <= r["test_sim_agreement"] <= 1.0 and -1e-9 <= r["test_cka"] <= 1.0 + 1e-9
    lines = table(rows)
    assert lines[2].startswith("| none | 2 |") and lines[3].startswith("| pkdot | 2 |")
    assert structure_main([str(experiment)]) == 0 and (experiment / "structure.csv").is_file()


def test_subject_group_table_splits_held_out_subjects_by_the_ground_truth(tmp_path: Path) -> None:
    from training.data.synth.biovid import TRUTH_FILE
    from training.experiment_report import subject_group_table

    dataset = tmp_path / "biovid"
    dataset.mkdir()
    runs = tmp_path / "pain"
    assert subject_group_table(runs, dataset) == []  # no ground truth: no table
    (dataset / TRUTH_FILE).write_text("subject_id\tsubject_name\tsensitivity\texpressiveness\tstoic\n"
                                      "0\ta\t1.0\t0.05\t1\n1\tb\t1.0\t0.9\t0\n2\tc\t1.0\t1.1\t0\n")
    per = {"none": {"a": (0.2, 0.5), "b": (0.4, 1.0), "c": (0.6, 0.9)}, "pkdot": {"a": (0.3, 0.6), "b": (0.5, 1.0)}}
    for method, subjects in per.items():
        folder = runs / "fold0" / "seed0" / f"student-{method}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"test_per_subject": {
            s: {"accuracy": a, "binary_accuracy": b} for s, (a, b) in subjects.items()}}))
    lines = subject_group_table(runs, dataset)
    rows = [line for line in lines if line.startswith("| ") and "method" not in line]
    assert rows == ["| visual-only (no KD) | 20.0 / 50.0 (n=1) | 50.0 / 95.0 (n=2) |",
                    "| PKDOT (OT, ours) | 30.0 / 60.0 (n=1) | 50.0 / 100.0 (n=1) |"]


def test_untuned_students_start_once_their_folds_teacher_is_trained(tiny_biovid, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    lines: list[str] = []
    result = run_experiment(Path("configs/synthetic/pain.toml"), tmp_path / "pain", seeds=[0, 1], folds=[0, 1],
                            methods=["none"], overrides=tiny_overrides(root, cache), workers=2,
                            announce=lines.append)
    assert len(lines) == 2 + 4 and len(result.rows) == 4 + 4  # two teachers, four students; a teacher row per pair
    for fold in (0, 1):  # in one pool of two processes, each student after its own fold's teacher
        teacher = next(i for i, line in enumerate(lines) if f"fold {fold} seed 0 teacher" in line)
        students = [i for i, line in enumerate(lines) if f"fold {fold} seed" in line and " none " in line]
        assert len(students) == 2 and min(students) > teacher
    with pytest.raises(ValueError, match="only wait for a job listed before it"):
        _run_all([(None, [], tmp_path / "a", False), (None, [], tmp_path / "b", False)], 2, after=[1, None])


_POOL_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from training.experiment import _init_worker
if __name__ == "__main__":
    with ProcessPoolExecutor(2, initializer=_init_worker, initargs=(os.getpid(),),
                             mp_context=get_context("spawn")) as pool:
        print(" ".join(str(p) for p in {pool.submit(os.getpid).result() for _ in range(4)}), flush=True)
        pool.submit(time.sleep, 120)
        time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_pool_workers_end_with_the_experiment_process(sig: int) -> None:
    """`pkdot experiment` stopped by a signal (or killed outright) leaves no pool process training on."""
    proc = subprocess.Popen([sys.executable, "-c", _POOL_SCRIPT], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        children = [int(p) for p in proc.stdout.readline().split()]
        assert children and all(_alive(c) for c in children)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children)
    finally:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
