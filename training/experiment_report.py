"""docs/experiments.md from finished experiments (python -m training.experiment_report RUNS_DIR OUT_MD)."""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}")


GENERIC_READING = ["## Reading the numbers", "",
    "The synthetic generator gives the privileged modality a strong, reliable cue (biosignal response "
    "amplitude for pain, voice pitch and energy for affect) and the face a weak, subject-dependent one "
    "([synthetic-data.md](synthetic-data.md)). Test folds hold two or three subjects, so a fold "
    "moves the mean by several points: compare methods by their spread, not by one digit. These are "
    "synthetic-data results that test the pipeline; they are not claims about BioVid or Aff-Wild2.", ""]

DISCUSSION = "<!-- discussion: written by hand, kept when the report is made again -->"


def tuning_table(folder: Path) -> list[str]:
    """The PKDOT grid scored on validation subjects, as a markdown table (empty without tuning)."""
    grid = folder / "grid.csv"
    if not grid.is_file():
        return []
    rows = list(csv.DictReader(grid.open()))
    chosen = json.loads((folder / "chosen.json").read_text())
    names = list(rows[0])
    lines = ["PKDOT tuning on the validation subjects of the first fold, first seed (test subjects never seen):", "",
             "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(r[n] if n != names[-1] else f"{float(r[n]):.3f}" for n in names) + " |" for r in rows]
    return [*lines, "", f"Chosen: {', '.join(chosen['overrides'])}.", ""]


def subject_group_table(folder: Path, dataset: Path) -> list[str]:
    """Pain on a synthetic BioVid: each method's test accuracy on the stoic subjects (faces that barely move) and on
    the expressive ones, averaged over the runs' held-out subjects (empty when the dataset has no ground truth)."""
    from training.data.synth.biovid import read_subject_truth
    from training.experiment import LABELS

    truth = read_subject_truth(dataset)
    if not truth:
        return []
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for path in sorted(folder.glob("fold*/seed*/student-*/metrics.json")) + sorted(folder.glob("fold*/teacher/"
                                                                                               "metrics.json")):
        method = path.parent.name.removeprefix("student-")
        for subject, m in json.loads(path.read_text()).get("test_per_subject", {}).items():
            if subject in truth and "accuracy" in m:
                group = "stoic" if truth[subject]["stoic"] else "expressive"
                groups.setdefault(method, {}).setdefault(group, []).append((m["accuracy"], m["binary_accuracy"]))
    if not groups:
        return []
    order = ["teacher", *(m for m in LABELS if m != "teacher")]
    lines = ["Accuracy by subject group (held-out subjects of every fold and seed; a third of the synthetic subjects "
             "are stoic: their faces barely show the response, their biosignals do). Five-class / BL1 vs PA4, %:", "",
             "| method | stoic subjects | expressive subjects |", "|---|---|---|"]
    for method in (m for m in order if m in groups):
        cells = []
        for group in ("stoic", "expressive"):
            values = np.array(groups[method].get(group, []), float)
            cells.append(f"{100 * values[:, 0].mean():.1f} / {100 * values[:, 1].mean():.1f} (n={len(values)})"
                         if len(values) else "–")
        lines.append(f"| {LABELS.get(method, method)} | {' | '.join(cells)} |")
    return [*lines, ""]


def report(runs: Path, out: Path) -> str:
    parts = ["# Experiments", "",
             "The comparison of `pkdot experiment` on the synthetic datasets: the multimodal teacher (upper bound), "
             "the visual-only student without distillation (lower bound), and a visual-only student for every "
             "distillation method. Test metrics on held-out subjects (subject-independent folds; epochs chosen on "
             "validation subjects), mean ± standard deviation over folds × seeds. Below each table, every "
             "distillation method against the visual-only student paired by (fold, seed): the mean difference with "
             "95 % confidence intervals (Student t and a paired bootstrap) and the fraction of the teacher–student "
             "gap it recovers; an interval that excludes 0 is the evidence that a method helps.", "",
             "Reproduce with one command: `make experiment` (= `bash scripts/experiment.sh`), which writes the "
             "synthetic data when missing, then runs both tasks over every fold and seeds 0 1 2 (`--seeds 0` for "
             "one seed)", "",
             "```bash",
             "pkdot experiment --out runs/experiment",
             "```", "", f"Machine: {machine()}.", ""]
    titles = {"pain": "Pain (synthetic BioVid, five classes; accuracy and macro-F1 in %)",
              "affect": "Valence / arousal (synthetic Aff-Wild2; CCC)"}
    for task, title in titles.items():
        folder = runs / task
        if not (folder / "table.md").is_file():
            parts += [f"## {title}", "", "Not run yet.", ""]
            continue
        info = json.loads((folder / "experiment.json").read_text())
        figure = out.parent / f"experiments-{task}.png"
        shutil.copyfile(folder / "comparison.png", figure)
        parts += [f"## {title}", "", (folder / "table.md").read_text().strip(), "",
                  f"Folds {' '.join(map(str, info['folds']))}, seeds {' '.join(map(str, info['seeds']))}. "
                  f"Wall time: {info['seconds'] / 60:.1f} min with {info.get('workers', 1)} runs at once. "
                  f"PKDOT options: {', '.join(info['pkdot']) or 'the config defaults'}. "
                  f"Teacher: {info.get('teacher', 'one per fold and seed')}.", "",
                  f"![{task}]({figure.name})", ""]
        if (folder / "paired.png").is_file():
            paired = out.parent / f"experiments-{task}-paired.png"
            shutil.copyfile(folder / "paired.png", paired)
            parts += [f"![{task}: paired differences to the visual-only student]({paired.name})", ""]
        if task == "pain" and info.get("dataset"):
            parts += subject_group_table(folder, Path(info["dataset"]))
        parts += tuning_table(folder / "tuning")
    kept = out.read_text().split(DISCUSSION, 1) if out.is_file() else []
    discussion = kept[1] if len(kept) == 2 else "\n" + "\n".join(GENERIC_READING)
    text = "\n".join(parts) + f"\n{DISCUSSION}{discussion}"
    out.write_text(text)
    return text


if __name__ == "__main__":
    report(Path(sys.argv[1]), Path(sys.argv[2]))
