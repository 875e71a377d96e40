"""`pkdot experiment` end to end on tiny synthetic data: tuning on validation only, the table, resuming, the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.training.test_training import TINY_MODELS
from training.cli import main
from training.experiment import TUNE_GRID, run_experiment, tune_candidates
from training.experiment_report import DISCUSSION, report

GRID = {"weight": (0.6, 1.2), "params.pkdot.k": (3,)}


def tiny_overrides(root: Path, cache: Path) -> list[str]:
    return [f"data.root={str(root)!r}", f"data.cache={str(cache)!r}", "data.num_frames=4", "data.folds=3",
            "data.val_fraction=0.5", "data.channels=['gsr', 'emg_trapezius']", "optim.epochs=1",
            "optim.batch_size=4", "optim.bn_recalibration_batches=2", "kd.params={'pkdot': {'k': 3}}", *TINY_MODELS]


def test_tune_candidates() -> None:
    grid = {"a": (1, 2, 3), "b": (10, 20)}
    assert tune_candidates(grid) == [(1, 10), (2, 10), (3, 10), (1, 20)]  # one option changed at a time
    assert len(tune_candidates(grid, full=True)) == 6
    assert tune_candidates(TUNE_GRID)[0] == (0.6, 10, 0.01)  # the paper's λ and ε come first: they win ties


@pytest.fixture(scope="module")
def experiment(tiny_biovid, tmp_path_factory) -> Path:
    root, cache = tiny_biovid
    out = tmp_path_factory.mktemp("experiment") / "pain"
    run_experiment(Path("configs/synthetic/pain.toml"), out, seeds=[0], folds=[0, 1], methods=["none", "pkdot"],
                   overrides=tiny_overrides(root, cache), tune=True, tune_grid=GRID, workers=2)
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
    for f in (0, 1):
        split = json.loads((experiment / f"fold{f}" / "seed0" / "student-pkdot" / "split.json").read_text())
        subjects = {part: {k.split("/")[0] for k in keys} for part, keys in split.items()}
        assert not subjects["test"] & (subjects["train"] | subjects["val"])


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
    args = ["experiment", "--config", "configs/synthetic/pain.toml", "--out", str(experiment), "--seeds", "0",
            "--folds", "0", "1", "--methods", "none", "pkdot", "--workers", "1"]
    for item in tiny_overrides(root, cache):
        args += ["--set", item]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    assert "| PKDOT" in capsys.readouterr().out


def test_report_keeps_the_discussion(experiment: Path, tmp_path: Path) -> None:
    doc = tmp_path / "experiments.md"
    doc.write_text(f"STALE-HEADER\n{DISCUSSION}\nHand-written reading of the numbers.\n")
    text = report(experiment.parent, doc)
    assert text == doc.read_text() and "STALE-HEADER" not in text.split(DISCUSSION)[0]
    assert text.endswith("Hand-written reading of the numbers.\n")
    assert "| PKDOT" in text and "PKDOT tuning" in text and "--tune" in text
    assert (tmp_path / "experiments-pain.png").is_file()
