"""Evaluation metrics (numpy only): pain classification and valence/arousal regression, with per-subject breakdown.

Pain: accuracy, macro-F1, mean absolute error in levels, quadratic-weighted Cohen's kappa; from class probabilities
also the paper's binary protocol read off the five-class model (BL1 vs PA4 samples, PA4 when the expected level
is above the middle level) and Spearman's rank correlation between the expected level and the class.
Affect: Lin's concordance correlation coefficient (CCC), RMSE and Pearson's r, per dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AFFECT_DIMS = ("valence", "arousal")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def macro_f1(cm: np.ndarray) -> float:
    """Mean over classes present in the truth or the predictions of F1 = 2·TP / (2·TP + FP + FN)."""
    tp = np.diag(cm).astype(float)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = (tp + fp + fn) > 0
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def quadratic_weighted_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa with weights (i − j)² / (C − 1)²: 1 = perfect, 0 = chance agreement."""
    c = cm.shape[0]
    n = cm.sum()
    if n == 0 or c < 2:
        return 0.0
    i, j = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    w = (i - j) ** 2 / (c - 1) ** 2
    expected = np.outer(cm.sum(1), cm.sum(0)) / n
    denom = (w * expected).sum()
    return float(1.0 - (w * cm).sum() / denom) if denom > 0 else 0.0


def expected_level(probabilities: np.ndarray) -> np.ndarray:
    """sum_k k * p_k per row of (N, C) class probabilities: the ordinal level the model expects, in [0, C - 1]."""
    p = np.asarray(probabilities, float)
    return p @ np.arange(p.shape[1], dtype=float)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties): Pearson's r of the ranks."""
    from scipy.stats import rankdata

    return pearson(rankdata(x), rankdata(y))


def pain_metrics(y_true: Sequence[int], y_pred: Sequence[int] | np.ndarray, num_classes: int) -> dict[str, float]:
    """y_pred: predicted classes (N,), or class probabilities (N, C), which add `binary_accuracy` (BL1 vs PA4
    samples only, five classes) and `spearman` (expected level against the class)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate")
    probabilities = y_pred if y_pred.ndim == 2 else None
    classes = (probabilities.argmax(1) if probabilities is not None else y_pred).astype(int)
    cm = confusion_matrix(y_true, classes, num_classes)
    out = {
        "accuracy": float((y_true == classes).mean()),
        "macro_f1": macro_f1(cm),
        "mae": float(np.abs(y_true - classes).mean()),
        "qwk": quadratic_weighted_kappa(cm),
    }
    if probabilities is not None and num_classes > 2:
        level = expected_level(probabilities)
        ends = (y_true == 0) | (y_true == num_classes - 1)
        if ends.any():
            out["binary_accuracy"] = float(((level[ends] > (num_classes - 1) / 2) == (y_true[ends] > 0)).mean())
        out["spearman"] = spearman(level, y_true)
    return out


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient: 2·cov(x, y) / (var x + var y + (mean x − mean y)²)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    sx, sy = x.std(), y.std()
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy)) if sx > 0 and sy > 0 else 0.0


def affect_metrics(va_true: np.ndarray, va_pred: np.ndarray) -> dict[str, float]:
    """va_true, va_pred: (N, 2) valence, arousal. Adds `ccc_mean`, the average over both dimensions."""
    va_true, va_pred = np.asarray(va_true, float), np.asarray(va_pred, float)
    if va_true.ndim != 2 or va_true.shape[1] != 2 or va_true.shape != va_pred.shape or len(va_true) == 0:
        raise ValueError(f"expected two (N, 2) arrays with N > 0, got {va_true.shape} and {va_pred.shape}")
    out: dict[str, float] = {}
    for d, name in enumerate(AFFECT_DIMS):
        out[f"ccc_{name}"] = ccc(va_true[:, d], va_pred[:, d])
        out[f"rmse_{name}"] = float(np.sqrt(((va_true[:, d] - va_pred[:, d]) ** 2).mean()))
        out[f"pearson_{name}"] = pearson(va_true[:, d], va_pred[:, d])
    out["ccc_mean"] = (out["ccc_valence"] + out["ccc_arousal"]) / 2
    return out


def task_metrics(task: str, targets: np.ndarray, predictions: np.ndarray, num_classes: int = 5) -> dict[str, float]:
    """Dispatch on the task: pain targets are class indices and predictions class indices or (N, C)
    probabilities; affect targets and predictions are (N, 2) arrays."""
    if task == "pain":
        return pain_metrics(targets, predictions, num_classes)
    if task == "affect":
        return affect_metrics(targets, predictions)
    raise ValueError(f"unknown task {task!r}")


def per_subject(task: str, subjects: Sequence[str], targets: np.ndarray, predictions: np.ndarray,
                num_classes: int = 5) -> dict[str, dict[str, float]]:
    """The task's metrics computed on each subject's samples alone."""
    subjects = np.asarray(subjects)
    return {str(s): task_metrics(task, targets[subjects == s], predictions[subjects == s], num_classes)
            for s in sorted(set(subjects.tolist()))}


PRIMARY_METRIC = {"pain": "accuracy", "affect": "ccc_mean"}  # higher is better for both
