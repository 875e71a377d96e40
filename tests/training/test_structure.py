"""training.structure: the two measures of shared representation structure, and reading an experiment folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from training.structure import linear_cka, main, similarity_agreement


def test_measures_are_one_for_the_same_geometry_and_invariant_to_rotation_and_scale() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))  # a rotation
    assert linear_cka(a, a) == pytest.approx(1.0)
    assert linear_cka(a, 3.0 * a @ q) == pytest.approx(1.0)
    assert similarity_agreement(a, 2.0 * a @ q) == pytest.approx(1.0)


def test_measures_are_low_for_unrelated_embeddings_and_between() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 16))
    assert linear_cka(a, b) < 0.15
    assert abs(similarity_agreement(a, b)) < 0.1
    noisy = np.concatenate([a, rng.normal(size=(200, 8))], axis=1)  # half the student is the teacher
    assert 0.3 < similarity_agreement(noisy, a) < 0.95
    assert 0.3 < linear_cka(noisy, a) < 0.95


def test_constant_embeddings_give_nan_not_an_error() -> None:
    a = np.ones((10, 4))
    assert math.isnan(similarity_agreement(a, np.random.default_rng(2).normal(size=(10, 4))))
    assert math.isnan(linear_cka(a, a))


def test_command_line_refuses_a_missing_folder(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nothing")]) == 2
    assert "usage" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 1
