"""A manifest names its face detector exactly; an unknown name is refused, never guessed from its spelling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pkdot_contract.manifest import DetectorPreprocessing, Manifest, ModelFolderError, load_manifest
from pkdot_contract.preprocessing.face import DEFAULT_DETECTOR, DETECTORS, FaceDetector

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "pain-student" / "manifest.json"


def _manifest(detector: dict | None) -> dict:
    d = json.loads(BUNDLED.read_text())
    if detector is None:
        del d["preprocessing"]["detector"]
    else:
        d["preprocessing"]["detector"] = detector
    return d


def test_bundled_models_name_a_known_detector() -> None:
    for path in sorted((ROOT / "models").glob("*/manifest.json")):
        assert load_manifest(path.parent, verify=False).preprocessing.detector.name in DETECTORS


@pytest.mark.parametrize("name", ["full", "blazeface-full", "mediapipe-blazeface-full-range-v2", "short", ""])
def test_a_detector_name_that_is_not_known_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest({"name": name})))
    with pytest.raises(ModelFolderError, match="unknown face detector"):
        load_manifest(tmp_path, verify=False)


@pytest.mark.parametrize("detector", [{"name": DEFAULT_DETECTOR, "min_score": 1.5}, {"model": "full"}])
def test_a_malformed_detector_section_is_refused(detector: dict) -> None:
    with pytest.raises(ValueError, match="detector"):
        Manifest.model_validate(_manifest(detector))


def test_a_manifest_without_a_detector_gets_the_short_range_one() -> None:
    m = Manifest.model_validate(_manifest(None))
    assert m.preprocessing.detector == DetectorPreprocessing(name=DEFAULT_DETECTOR, min_score=None)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_named_detector_finds_the_face(name: str, face_rgb) -> None:
    with FaceDetector(name=name) as detector:
        assert detector.name == name
        box = detector.largest(face_rgb)
    assert box is not None and 0.5 < box.score <= 1.0
    assert 100 < box.x + box.w / 2 < 300 and 50 < box.y + box.h / 2 < 250  # the astronaut's face, upper middle


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detections_equal_mediapipe_process(name: str, face_rgb) -> None:
    """The detector feeds MediaPipe's graph itself (no result type per call): the same detections as
    `FaceDetection.process`, frame after frame, with and without a face."""
    blank = np.zeros_like(face_rgb)
    with FaceDetector(name=name) as detector:
        for frame in (face_rgb, blank, face_rgb[:, ::-1].copy(), face_rgb):
            want = detector._detector.process(frame).detections or []
            got = detector._run(frame)
            assert [d.SerializeToString() for d in got] == [d.SerializeToString() for d in want]
        assert detector._run(face_rgb) and not detector._run(blank)
