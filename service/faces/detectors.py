"""A pool of MediaPipe face detectors shared by the worker threads, opened as each model's manifest asks.

MediaPipe detectors are not thread-safe, so the pool hands each worker thread a detector of its own for the length
of one call.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from pkdot_contract.manifest import DetectorPreprocessing
from pkdot_contract.preprocessing.face import DEFAULT_DETECTOR, FaceBox, FaceDetector


def detector_config(detector: DetectorPreprocessing, default_min_score: float) -> tuple[str, float]:
    """(name, min_score) from a manifest's `preprocessing.detector`, e.g. {"name": "mediapipe-blazeface-short-range",
    "min_score": 0.5}: the face finder a model was trained with is the one it is served with."""
    return detector.name, default_min_score if detector.min_score is None else detector.min_score


class DetectorPool:
    """`size` MediaPipe detectors shared by the worker threads; `detect` blocks until one is free."""

    def __init__(self, size: int, min_score: float = 0.5, name: str = DEFAULT_DETECTOR) -> None:
        self._free: queue.SimpleQueue[FaceDetector] = queue.SimpleQueue()
        self._all = [FaceDetector(min_score=min_score, name=name) for _ in range(size)]
        for d in self._all:
            self._free.put(d)

    @property
    def size(self) -> int:
        return len(self._all)

    @contextmanager
    def _detector(self) -> Iterator[FaceDetector]:
        d = self._free.get()
        try:
            yield d
        finally:
            self._free.put(d)

    def largest(self, rgb: np.ndarray) -> FaceBox | None:
        """The largest face of an RGB uint8 frame, or None. Blocking: call it from a worker thread."""
        with self._detector() as d:
            return d.largest(rgb)

    def close(self) -> None:
        for d in self._all:
            d.close()
