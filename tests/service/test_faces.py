"""The service's face stage: the detector a manifest names, and detect-then-track."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from pkdot_contract.manifest import DetectorPreprocessing
from service.faces.detectors import DetectorPool, detector_config
from service.faces.tracker import FaceTracker


def test_the_pool_opens_the_detector_the_manifest_names() -> None:
    full = DetectorPreprocessing(name="mediapipe-blazeface-full-range", min_score=0.7)
    assert detector_config(full, 0.5) == ("mediapipe-blazeface-full-range", 0.7)
    assert detector_config(DetectorPreprocessing(), 0.4) == ("mediapipe-blazeface-short-range", 0.4)
    pool = DetectorPool(1, 0.7, "mediapipe-blazeface-full-range")
    try:
        assert [d.name for d in pool._all] == ["mediapipe-blazeface-full-range"]
    finally:
        pool.close()


def test_a_reset_while_a_frame_is_in_process_is_not_undone(face_rgb) -> None:
    """A stream's `reset` arrives on the event loop while the worker thread is inside the tracker: the face that
    frame finds must not be written back over the reset (the next frame is detected afresh, not tracked)."""
    pool = DetectorPool(1)
    tracker = FaceTracker(pool, detect_every=5)
    try:
        with ThreadPoolExecutor(1) as worker:
            with pool._detector():  # the pool's only detector is taken: the tracker's detection waits for it
                in_process = worker.submit(tracker, face_rgb)
                deadline = time.monotonic() + 10
                while not in_process.running() and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)  # the worker is now waiting inside the tracker's detection
                tracker.reset()
            box, tracked = in_process.result(timeout=30)
        assert box is not None and not tracked  # that frame still gets its face
        box, tracked = tracker(face_rgb)
        assert box is not None and not tracked and tracker.detections == 2 and tracker.tracked == 0
        box, tracked = tracker(face_rgb)  # and after a detection, tracking goes on as before
        assert tracked and tracker.tracked == 1
    finally:
        pool.close()
