"""Postprocessing in plain Python (once per stream frame) against the numpy definitions it stands for."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.schemas import AffectPrediction, PainPrediction
from service.inference.predictor import affect_fields, mean_fields, pain_fields, softmax

LABELS = ["BL1", "PA1", "PA2", "PA3", "PA4"]


def test_softmax_and_pain_fields_match_numpy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        logits = (rng.normal(size=5) * rng.uniform(0.1, 30)).astype(np.float32)
        z = np.exp(logits.astype(np.float64) - logits.max())
        want = z / z.sum()
        got = pain_fields(softmax(logits.tolist()), LABELS)
        np.testing.assert_allclose(got["probabilities"], want, rtol=1e-12, atol=1e-15)
        assert got["pain_level"] == int(np.argmax(want)) and got["label"] == LABELS[got["pain_level"]]
        assert got["expected_level"] == pytest.approx(float((want * np.arange(5)).sum()), abs=1e-12)
        PainPrediction(**got)  # within the schema's ranges


def test_pain_fields_edge_cases() -> None:
    tie = pain_fields([0.4, 0.4, 0.2, 0.0, 0.0], LABELS)
    assert tie["pain_level"] == 0  # the first on a tie, as numpy's argmax
    zero = pain_fields([0.0] * 5, LABELS)
    assert zero["probabilities"] == [0.2] * 5 and zero["expected_level"] == pytest.approx(2.0)
    clipped = pain_fields([-0.5, 2.0, 0.0], LABELS[:3])  # out-of-range outputs: clipped, then renormalised
    assert clipped["probabilities"] == [0.0, 1.0, 0.0] and clipped["expected_level"] == 1.0


def test_affect_fields_clip_to_the_manifest_ranges() -> None:
    assert affect_fields([1.7, -0.25]) == {"valence": 1.0, "arousal": -0.25}
    got = affect_fields(np.array([0.9, -0.9], np.float32).tolist(), {"valence": (-0.5, 0.5), "arousal": (-2, 0)})
    assert got == {"valence": 0.5, "arousal": pytest.approx(-0.9)}
    AffectPrediction(**got)


def test_mean_fields_average_the_window() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5), size=7)
    mean = mean_fields([pain_fields(p.tolist(), LABELS) for p in probs], LABELS)
    np.testing.assert_allclose(mean["probabilities"], probs.mean(axis=0), atol=1e-12)
    va = rng.uniform(-1, 1, size=(4, 2))
    mean = mean_fields([affect_fields(v.tolist()) for v in va], None)
    assert [mean["valence"], mean["arousal"]] == pytest.approx(va.mean(axis=0).tolist())
    assert mean_fields([], LABELS) is None
