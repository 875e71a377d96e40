"""The service's face stage: the detector a manifest names, and detect-then-track."""

from __future__ import annotations

from pkdot_contract.manifest import DetectorPreprocessing
from service.faces.detectors import DetectorPool, detector_config


def test_the_pool_opens_the_detector_the_manifest_names() -> None:
    full = DetectorPreprocessing(name="mediapipe-blazeface-full-range", min_score=0.7)
    assert detector_config(full, 0.5) == ("mediapipe-blazeface-full-range", 0.7)
    assert detector_config(DetectorPreprocessing(), 0.4) == ("mediapipe-blazeface-short-range", 0.4)
    pool = DetectorPool(1, 0.7, "mediapipe-blazeface-full-range")
    try:
        assert [d.name for d in pool._all] == ["mediapipe-blazeface-full-range"]
    finally:
        pool.close()

