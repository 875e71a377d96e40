"""Paired statistics of the comparison experiment: each distillation method against the visual-only student on the
same (fold, seed), with Student-t and bootstrap confidence intervals, and the share of the teacher–student gap that a
method recovers. Numpy and scipy only; an interval that one pair cannot give is NaN."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as st

BASELINE = "none"
REFERENCE = "teacher"
RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
NAN = float("nan")


def _value(row: dict, metric: str) -> float:
    """The row's test value of `metric` as a float (NaN when absent or empty)."""
    raw = row.get(f"test_{metric}")
    if raw is None or raw == "":
        return NAN
    return float(raw)


def by_pair(rows: Sequence[dict], method: str, metric: str) -> dict[tuple[int, int], float]:
    """{(fold, seed): test value} of one method; runs without the metric are left out."""
    out = {}
    for r in rows:
        if r["method"] == method:
            v = _value(r, metric)
            if math.isfinite(v):
                out[(int(r["fold"]), int(r["seed"]))] = v
    return out


def t_interval(diffs: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of paired differences (NaN, NaN) with fewer than two pairs."""
    n = len(diffs)
    if n < 2:
        return NAN, NAN
    mean = float(np.mean(diffs))
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * float(np.std(diffs, ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) indices of pairs drawn with replacement, the same for a given seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return NAN, NAN
    lo, hi = np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_interval(diffs: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences, resampling pairs; NaN below two pairs."""
    if len(diffs) < 2:
        return NAN, NAN
    means = np.asarray(diffs, float)[resample_indices(len(diffs), resamples, seed)].mean(axis=1)
    return _percentiles(means, level)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def gap_recovered(method_diffs: np.ndarray, teacher_diffs: np.ndarray, *, resamples: int = RESAMPLES,
                  seed: int = SEED, level: float = LEVEL) -> tuple[float, float, float]:
    """(fraction, low, high): mean(method − baseline) / mean(teacher − baseline) over the same pairs, with a
    bootstrap interval that resamples the pairs; NaN where the teacher gap is zero or there is one pair only."""
    m, t = np.asarray(method_diffs, float), np.asarray(teacher_diffs, float)
    if len(m) == 0:
        return NAN, NAN, NAN
    fraction = float(_ratio(np.array(m.mean()), np.array(t.mean())))
    if len(m) < 2:
        return fraction, NAN, NAN
    idx = resample_indices(len(m), resamples, seed)
    low, high = _percentiles(_ratio(m[idx].mean(axis=1), t[idx].mean(axis=1)), level)
    return fraction, low, high


def paired_comparison(rows: Sequence[dict], metric: str, method: str, *, baseline: str = BASELINE,
                      reference: str = REFERENCE, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """One method against the baseline on `metric`, paired by (fold, seed): the mean difference, its t and
    bootstrap 95 % intervals, and the fraction of the reference (teacher) gap recovered."""
    values, base, ref = by_pair(rows, method, metric), by_pair(rows, baseline, metric), by_pair(rows, reference, metric)
    keys = sorted(values.keys() & base.keys())
    diffs = np.array([values[k] - base[k] for k in keys], float)
    gap_keys = [k for k in keys if k in ref]
    gap_m = np.array([values[k] - base[k] for k in gap_keys], float)
    gap_t = np.array([ref[k] - base[k] for k in gap_keys], float)
    t_low, t_high = t_interval(diffs)
    b_low, b_high = bootstrap_interval(diffs, resamples=resamples, seed=seed)
    fraction, g_low, g_high = gap_recovered(gap_m, gap_t, resamples=resamples, seed=seed)
    return {"metric": metric, "method": method, "pairs": len(keys),
            "delta_mean": float(diffs.mean()) if len(diffs) else NAN, "t_low": t_low, "t_high": t_high,
            "boot_low": b_low, "boot_high": b_high, "teacher_gap": float(gap_t.mean()) if len(gap_t) else NAN,
            "gap_pairs": len(gap_keys), "gap_recovered": fraction, "gap_low": g_low, "gap_high": g_high}


def paired_table(rows: Sequence[dict], metrics: Sequence[str], *, baseline: str = BASELINE,
                 reference: str = REFERENCE, resamples: int = RESAMPLES, seed: int = SEED) -> list[dict]:
    """paired_comparison of every method other than the baseline and the reference, for each metric that some
    baseline run has (so a metric missing from the runs is skipped, not an error)."""
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m not in (baseline, reference)]
    out = []
    for metric in metrics:
        if not by_pair(rows, baseline, metric):
            continue
        out += [paired_comparison(rows, metric, m, baseline=baseline, reference=reference, resamples=resamples,
                                  seed=seed) for m in methods]
    return out


def jsonable(entries: Sequence[dict]) -> list[dict]:
    """The entries with NaN as None (strict JSON has no NaN)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in e.items()}
            for e in entries]
