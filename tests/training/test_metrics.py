"""Metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from training.metrics import affect_metrics, ccc, confusion_matrix, pain_metrics, pearson, per_subject


def test_pain_metrics_hand_example() -> None:
    y_true = [0, 1, 2, 3, 4, 4]
    y_pred = [0, 1, 1, 3, 2, 4]
    m = pain_metrics(y_true, y_pred, 5)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mae"] == pytest.approx((0 + 0 + 1 + 0 + 2 + 0) / 6)
    cm = confusion_matrix(y_true, y_pred, 5)
    assert cm.sum() == 6 and cm[4, 2] == 1 and cm[2, 1] == 1


def test_pain_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 500)
    y_pred = np.clip(y_true + rng.integers(-2, 3, 500), 0, 4)
    m = pain_metrics(y_true, y_pred, 5)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert m["qwk"] == pytest.approx(cohen_kappa_score(y_true, y_pred, weights="quadratic"), abs=1e-12)


def test_perfect_and_empty() -> None:
    m = pain_metrics([0, 1, 2], [0, 1, 2], 5)
    assert m["accuracy"] == 1.0 and m["qwk"] == 1.0 and m["macro_f1"] == 1.0
    with pytest.raises(ValueError):
        pain_metrics([], [], 5)


def test_ccc_properties() -> None:
    x = np.linspace(-1, 1, 100)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) == pytest.approx(-1.0)
    assert ccc(x, x + 0.5) < 1.0 and pearson(x, x + 0.5) == pytest.approx(1.0)  # CCC penalises bias
    assert ccc(x, np.zeros_like(x)) == 0.0


def test_affect_metrics_and_per_subject() -> None:
    rng = np.random.default_rng(1)
    va = rng.uniform(-1, 1, (40, 2))
    m = affect_metrics(va, va)
    assert m["ccc_mean"] == pytest.approx(1.0) and m["rmse_valence"] == 0.0
    subjects = np.array(["a"] * 20 + ["b"] * 20)
    by = per_subject("affect", subjects, va, va * 0.5)
    assert set(by) == {"a", "b"} and all(0 < v["ccc_mean"] < 1 for v in by.values())
    with pytest.raises(ValueError):
        affect_metrics(va[:, :1], va[:, :1])
