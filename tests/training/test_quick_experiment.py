"""`pkdot experiment --quick` on the default synthetic benchmark, as a user runs it: the students learn.

The data are `pkdot synth`'s defaults (the benchmark of configs/synthetic/), written and prepared here. One fold
and one seed give a few test subjects only, so the bounds are looser than the targets the full experiment is held
to (docs/experiments.md): pain visual-only ≥ 35 % five-class and ≥ 70 % BL1 vs PA4, affect visual-only CCC ≥ 0.25,
and the teacher above the student by 10 points / 0.10.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.data.prepare import prepare
from training.data.synth import write_affwild2, write_biovid

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # data (about 2.5 min) and the runs
ROOT = Path(__file__).resolve().parents[2]
QUICK_LIMIT_S = 300  # both tasks, on 2 cores


@pytest.fixture(scope="module")
def benchmark_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("benchmark")
    write_biovid(base / "biovid", workers=2)
    write_affwild2(base / "affwild2", workers=2)
    prepare("biovid", base / "biovid", base / "cache-biovid", crop={"size": 64}, every=2, workers=2, progress=False)
    prepare("affwild2", base / "affwild2", base / "cache-affwild2", crop={"size": 64}, workers=2, progress=False)
    return {"pain": (base / "biovid", base / "cache-biovid"), "affect": (base / "affwild2", base / "cache-affwild2")}


@pytest.fixture(scope="module")
def quick(benchmark_data, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("quick")
    started = time.perf_counter()
    for task, (root, cache) in benchmark_data.items():
        subprocess.run([sys.executable, "-m", "pkdot", "experiment", "--quick", "--config",
                        f"configs/synthetic/{task}.toml", "--data", str(root), "--cache", str(cache), "--out",
                        str(out)], cwd=ROOT, check=True, timeout=QUICK_LIMIT_S * 2)
    return out, time.perf_counter() - started


def test_quick_experiment_is_quick(quick) -> None:
    out, seconds = quick
    assert seconds <= QUICK_LIMIT_S * 1.2, f"pkdot experiment --quick took {seconds:.0f} s"
    for task in ("pain", "affect"):
        methods = {r["method"] for r in csv.DictReader((out / task / "runs.csv").open())}
        assert methods == {"teacher", "none", "pkdot"}


def _test_scores(out: Path, task: str) -> dict[str, dict[str, float]]:
    rows = list(csv.DictReader((out / task / "runs.csv").open()))
    assert {(r["fold"], r["seed"]) for r in rows} == {("0", "0")}
    return {r["method"]: {k[5:]: float(v) for k, v in r.items() if k.startswith("test_") and v} for r in rows}


def test_pain_students_learn(quick) -> None:
    s = _test_scores(quick[0], "pain")
    student, teacher = s["none"], s["teacher"]
    # chance 0.20; full-experiment target 0.35 (mean of 15 runs). One fold tests 4 subjects x 15 clips: the binomial
    # spread alone is ±6 points, and a third of the subjects are stoic (chance for any visual model)
    assert student["accuracy"] >= 0.27, student
    assert student["binary_accuracy"] >= 0.65, student  # chance 0.50; target 0.70
    assert student["spearman"] >= 0.3, student
    assert teacher["accuracy"] >= student["accuracy"] + 0.05, (teacher, student)  # target +0.10
    assert teacher["binary_accuracy"] >= student["binary_accuracy"], (teacher, student)


def test_affect_students_learn(quick) -> None:
    s = _test_scores(quick[0], "affect")
    student, teacher = s["none"], s["teacher"]
    assert student["ccc_mean"] >= 0.20, student  # chance 0; full-experiment target 0.25
    assert teacher["ccc_mean"] >= student["ccc_mean"] + 0.05, (teacher, student)  # target +0.10
