"""Figures written into run folders: learning curves, confusion matrix, valence/arousal scatter, the teacher and
student similarity matrices with their OT divergence, and the experiment's bar chart and paired forest plot.
Matplotlib, no display."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Sequence[dict], path: str | os.PathLike, primary: str) -> None:
    """history: one dict per epoch with `epoch` and `train_loss`, and `val_loss` and `val_<primary>` for the
    validated epochs (from optim.validate_from on)."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    validated = [h for h in history if f"val_{primary}" in h]
    val_epochs = [h["epoch"] for h in validated]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(val_epochs, [h["val_loss"] for h in validated], label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="Loss")
    a.legend()
    b.plot(val_epochs, [h[f"val_{primary}"] for h in validated], color="tab:green")
    if validated:
        best = int(np.argmax([h[f"val_{primary}"] for h in validated]))
        b.axvline(val_epochs[best], color="grey", ls="--", lw=1, label=f"best (epoch {val_epochs[best]})")
        b.legend()
    b.set(xlabel="epoch", ylabel=primary, title=f"Validation {primary}", xlim=a.get_xlim())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion(cm: np.ndarray, labels: Sequence[str], path: str | os.PathLike, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def va_scatter(va_true: np.ndarray, va_pred: np.ndarray, path: str | os.PathLike, title: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for d, (ax, name) in enumerate(zip(axes, ("valence", "arousal"), strict=True)):
        ax.scatter(va_true[:, d], va_pred[:, d], s=6, alpha=0.5)
        ax.plot([-1, 1], [-1, 1], color="grey", lw=1, ls="--")
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel=f"true {name}", ylabel=f"predicted {name}", aspect="equal")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def similarity_matrices(a_t: np.ndarray, a_s: np.ndarray, divergence: float, path: str | os.PathLike) -> None:
    """Cosine-similarity matrices (B, B) of one batch of teacher and student embeddings, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, m, title in zip(axes, (a_t, a_s, a_t - a_s), ("teacher", "student", "teacher − student"), strict=True):
        im = ax.imshow(m, cmap="RdBu_r" if "−" in title else "viridis", vmin=-1, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Batch similarity structure; PKDOT OT divergence = {divergence:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def method_bars(rows: Sequence[dict], metric: str, path: str | os.PathLike, title: str) -> None:
    """rows: {"method", "mean", "std"}; one bar per method with its standard deviation over runs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows)), 3.8))
    x = np.arange(len(rows))
    ax.bar(x, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], capsize=3,
           color=["tab:orange" if r["method"] == "teacher" else "tab:blue" for r in rows])
    ax.set(xticks=x, ylabel=metric, title=title)
    ax.set_xticklabels([r["method"] for r in rows], rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paired_forest(entries: Sequence[dict], path: str | os.PathLike, title: str, xlabel: str,
                  scale: float = 1.0) -> None:
    """entries: stats.paired_comparison dicts with a `label`; one row per method, the mean paired difference with
    its bootstrap interval, a line at 0 (no effect) and one at the teacher gap (all of it recovered), and the
    fraction of the gap recovered as text. Missing intervals (one pair) draw the point alone."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(entries)))
    y = np.arange(len(entries))[::-1]
    for yi, e in zip(y, entries, strict=True):
        mean = scale * e["delta_mean"]
        low, high = scale * e["boot_low"], scale * e["boot_high"]
        if np.isfinite(low) and np.isfinite(high):
            ax.errorbar(mean, yi, xerr=[[mean - low], [high - mean]], fmt="o", color="tab:blue", capsize=3)
        else:
            ax.plot(mean, yi, "o", color="tab:blue")
        g = e["gap_recovered"]
        text = "gap recovered: undefined" if not np.isfinite(g) else (
            f"gap recovered {100 * g:.0f} % [{100 * e['gap_low']:.0f}, {100 * e['gap_high']:.0f}]"
            if np.isfinite(e["gap_low"]) else f"gap recovered {100 * g:.0f} % (no interval)")
        ax.annotate(text, (1.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.axvline(0, color="grey", lw=1)
    gaps = [e["teacher_gap"] for e in entries if np.isfinite(e["teacher_gap"])]
    if gaps:
        ax.axvline(scale * gaps[0], color="tab:orange", ls="--", lw=1, label="teacher − visual-only")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(yticks=y, xlabel=xlabel, title=title, ylim=(-0.7, len(entries) - 0.3))
    ax.set_yticklabels([e["label"] for e in entries])
    fig.tight_layout()
    fig.subplots_adjust(right=0.75)
    fig.savefig(path, dpi=110)
    plt.close(fig)
