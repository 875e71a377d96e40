"""Tiny synthetic datasets with their face-crop caches, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_biovid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, cache): 3 subjects x 5 classes x 2 samples, crops of 32 px from every 3rd frame."""
    from training.data.prepare import prepare
    from training.data.synth import write_biovid

    base = tmp_path_factory.mktemp("tiny-biovid")
    root, cache = base / "biovid", base / "cache"
    write_biovid(root, subjects=3, samples_per_class=2, seed=3, size=(200, 160), workers=1)
    summary = prepare("biovid", root, cache, crop={"size": 32}, every=3, progress=False)
    assert summary.prepared == 30 and not summary.broken
    return root, cache


@pytest.fixture(scope="session")
def tiny_affwild2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(root, cache): 4 short videos (one with two people), crops of 32 px from every 2nd frame."""
    from training.data.prepare import prepare
    from training.data.synth import write_affwild2

    base = tmp_path_factory.mktemp("tiny-affwild2")
    root, cache = base / "affwild2", base / "cache"
    write_affwild2(root, videos=4, seconds=3.0, seed=5, size=(200, 160), workers=1)
    summary = prepare("affwild2", root, cache, crop={"size": 32}, every=2, progress=False)
    assert not summary.broken
    return root, cache


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small tensors on a 2-core machine: one intra-op thread is as fast, and does not spin against other work."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher_run(tiny_biovid, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pain teacher trained on the tiny dataset (tests.training.test_training.pain_config), one per module."""
    from tests.training.test_training import pain_config
    from training.train import run_training

    root, cache = tiny_biovid
    out = tmp_path_factory.mktemp("runs") / "teacher"
    run_training(pain_config(root, cache, out), progress=False)
    return out
