"""Does a student's representation take on its teacher's structure? Measured on the test subjects of each fold.

PKDOT, RKD, PKT and the other relational losses ask the student to copy how the teacher arranges samples, not
where it puts them. Two measures of that, from the embeddings of the same test clips (the student sees the video,
the teacher the video and the privileged signal):

    similarity agreement  Pearson correlation between the upper triangles of the two cosine-similarity matrices
                          (N × N each): 1 when the student ranks every pair of clips as alike as the teacher does
    linear CKA            Kornblith et al. (ICML 2019): ‖Kᵀ_s K_t‖²_F / (‖Kᵀ_s K_s‖_F ‖Kᵀ_t K_t‖_F) on centred
                          embeddings; invariant to rotation and scale, 1 for the same geometry

If distillation transfers structure, both rise over the visual-only student's; `pkdot experiment` folders are
read as they are:

    python -m training.structure runs/experiment/pain     -> structure.csv and a paired table on stdout
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from training import stats
from training.data.build import build_datasets
from training.objectives import privileged_input
from training.train import load_run


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of (N, D1) and (N, D2) embeddings of the same N samples."""
    a, b = a - a.mean(0), b - b.mean(0)
    cross = np.linalg.norm(a.T @ b) ** 2
    denom = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(cross / denom) if denom > 0 else float("nan")


def similarity_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the pairwise cosine similarities (upper triangle) of two embeddings of N samples."""
    def cosine(x: np.ndarray) -> np.ndarray:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x @ x.T  # (N, N)

    iu = np.triu_indices(len(a), k=1)
    sa, sb = cosine(a)[iu], cosine(b)[iu]
    if sa.std() == 0 or sb.std() == 0:
        return float("nan")
    return float(np.corrcoef(sa, sb)[0, 1])


@torch.no_grad()
def embeddings(model: torch.nn.Module, ds, teacher: bool, batch_size: int = 32) -> np.ndarray:
    """(N, D) embeddings of a dataset in its order."""
    out = []
    for batch in DataLoader(ds, batch_size=batch_size):
        z = model(batch["video"], privileged_input(batch))["embedding"] if teacher else model(batch["video"])[
            "embedding"]
        out.append(z.numpy())
    return np.concatenate(out)


def measure(folder: Path) -> list[dict]:
    """One row per student run of a `pkdot experiment` folder: method, fold, seed, test_sim_agreement, test_cka."""
    rows = []
    for fold_dir in sorted(folder.glob("fold*")):
        fold = int(fold_dir.name[4:])
        for seed_dir in sorted(fold_dir.glob("seed*")):
            teacher_dir = seed_dir / "teacher" if (seed_dir / "teacher").is_dir() else fold_dir / "teacher"
            if not (teacher_dir / "best.pt").is_file():
                continue
            tcfg, teacher = load_run(teacher_dir)
            test = build_datasets(tcfg.data, tcfg.task).test
            z_t = embeddings(teacher, test, teacher=True)
            for run in sorted(seed_dir.glob("student-*")):
                if not (run / "best.pt").is_file():
                    continue
                _, student = load_run(run)
                z_s = embeddings(student, test, teacher=False)
                rows.append({"method": run.name[len("student-"):], "fold": fold, "seed": int(seed_dir.name[4:]),
                             "test_sim_agreement": similarity_agreement(z_s, z_t),
                             "test_cka": linear_cka(z_s, z_t)})
    return rows


def write(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["method", "fold", "seed", "test_sim_agreement", "test_cka"])
        w.writeheader()
        w.writerows(rows)


def table(rows: list[dict]) -> list[str]:
    """Markdown: mean of each measure per method and the paired difference to visual-only with its 95 % t CI."""
    lines = ["| method | runs | similarity agreement | Δ vs visual-only (95 % CI) | linear CKA "
             "| Δ vs visual-only (95 % CI) |",
             "|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = [method, str(sum(r["method"] == method for r in rows))]
        for metric in ("sim_agreement", "cka"):
            values = [r[f"test_{metric}"] for r in rows if r["method"] == method]
            cells.append(f"{np.nanmean(values):.3f}")
            if method == stats.BASELINE:
                cells.append("–")
                continue
            c = stats.paired_comparison(rows, metric, method)
            cells.append(f"{c['delta_mean']:+.3f} ({c['t_low']:+.3f}, {c['t_high']:+.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m training.structure EXPERIMENT_TASK_FOLDER (e.g. runs/experiment/pain)",
              file=sys.stderr)
        return 2
    folder = Path(argv[0])
    rows = measure(folder)
    if not rows:
        print(f"{folder}: no finished student run with its teacher", file=sys.stderr)
        return 1
    write(rows, folder / "structure.csv")
    print("\n".join(table(rows)))
    print(f"\nper run: {folder / 'structure.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
