"""Paired statistics of the experiment on hand-made rows with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from training import stats
from training.experiment import paired_markdown


def rows_of(values: dict[str, list[float]], metric: str = "accuracy", seeds: int = 1) -> list[dict]:
    """One row per (method, pair); pair i is fold i // seeds, seed i % seeds."""
    return [{"method": m, "fold": i // seeds, "seed": i % seeds, f"test_{metric}": v}
            for m, vs in values.items() for i, v in enumerate(vs)]


def test_constant_difference_has_a_zero_width_interval_at_that_value() -> None:
    base = [0.30, 0.42, 0.35, 0.50]
    rows = rows_of({"teacher": [b + 0.2 for b in base], "none": base, "pkdot": [b + 0.05 for b in base]}, seeds=2)
    (e,) = stats.paired_table(rows, ["accuracy"])
    assert e["method"] == "pkdot" and e["pairs"] == 4
    for key in ("delta_mean", "t_low", "t_high", "boot_low", "boot_high"):
        assert e[key] == pytest.approx(0.05)
    assert e["teacher_gap"] == pytest.approx(0.2)
    assert (e["gap_recovered"], e["gap_low"], e["gap_high"]) == pytest.approx((0.25, 0.25, 0.25))


def test_t_interval_matches_scipy() -> None:
    diffs = np.array([0.1, -0.02, 0.05, 0.07, 0.0])
    low, high = stats.t_interval(diffs)
    expected = st.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=st.sem(diffs))
    assert (low, high) == pytest.approx(expected)
    b_low, b_high = stats.bootstrap_interval(diffs)
    assert diffs.min() <= b_low < diffs.mean() < b_high <= diffs.max()


def test_a_method_equal_to_the_teacher_recovers_all_of_the_gap() -> None:
    teacher, base = [0.6, 0.7, 0.65], [0.3, 0.45, 0.31]
    (e,) = stats.paired_table(rows_of({"teacher": teacher, "none": base, "kd": teacher}), ["accuracy"])
    assert (e["gap_recovered"], e["gap_low"], e["gap_high"]) == pytest.approx((1.0, 1.0, 1.0))
    assert e["delta_mean"] == pytest.approx(e["teacher_gap"])


def test_pairs_match_by_fold_and_seed_not_by_order() -> None:
    rows = rows_of({"teacher": [0.9, 0.9], "none": [0.1, 0.5], "pkd": [0.2, 0.6]})
    rows = [rows[i] for i in (0, 1, 5, 4, 3, 2)]  # runs in another order
    rows.append({"method": "pkd", "fold": 7, "seed": 0, "test_accuracy": 1.0})  # no baseline: not a pair
    (e,) = stats.paired_table(rows, ["accuracy"])
    assert e["pairs"] == 2 and e["delta_mean"] == pytest.approx(0.1)


def test_one_pair_gives_nan_intervals_and_readable_markdown() -> None:
    rows = rows_of({"teacher": [0.8], "none": [0.4], "pkdot": [0.5]})
    (e,) = stats.paired_table(rows, ["accuracy", "binary_accuracy"])  # binary_accuracy absent: skipped
    assert e["pairs"] == 1 and e["delta_mean"] == pytest.approx(0.1) and e["gap_recovered"] == pytest.approx(0.25)
    assert all(math.isnan(e[k]) for k in ("t_low", "t_high", "boot_low", "boot_high", "gap_low", "gap_high"))
    text = paired_markdown([e], "pain")
    assert "one pair: no interval" in text and "nan" not in text.lower()
    assert "| PKDOT (OT, ours) | 1 | +10.0 |" in text and "25 %" in text
    assert stats.jsonable([e])[0]["t_low"] is None


def test_no_teacher_gap_is_undefined_not_an_error() -> None:
    rows = rows_of({"teacher": [0.4, 0.5], "none": [0.4, 0.5], "rkd": [0.45, 0.5]}, metric="ccc_mean")
    (e,) = stats.paired_table(rows, ["ccc_mean"])
    assert math.isnan(e["gap_recovered"])
    assert "undefined" in paired_markdown([e], "affect")


def test_bootstrap_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.02, 0.05, size=9)
    teacher = diffs + rng.normal(0.1, 0.02, size=9)
    assert stats.bootstrap_interval(diffs) == stats.bootstrap_interval(diffs)
    assert stats.gap_recovered(diffs, teacher) == stats.gap_recovered(diffs, teacher)
    assert stats.bootstrap_interval(diffs, seed=1) != stats.bootstrap_interval(diffs)
    assert stats.resample_indices(9).shape == (stats.RESAMPLES, 9)


def test_binary_accuracy_when_present() -> None:
    rows = rows_of({"teacher": [0.9, 0.8], "none": [0.5, 0.6], "pkdot": [0.7, 0.6]}, metric="binary_accuracy")
    for r in rows:
        r["test_accuracy"] = 0.3
    paired = stats.paired_table(rows, ["accuracy", "binary_accuracy"])
    assert [(e["metric"], e["method"]) for e in paired] == [("accuracy", "pkdot"), ("binary_accuracy", "pkdot")]
    assert paired[1]["delta_mean"] == pytest.approx(0.1)
    assert "test binary_accuracy" in paired_markdown(paired, "pain")
