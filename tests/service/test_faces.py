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


def test_a_large_face_is_followed_at_half_size_from_its_next_detection(face_rgb, face_jpeg: bytes) -> None:
    from pkdot_contract.preprocessing.media import decode_image

    half = decode_image(face_jpeg, reduce=2)  # libjpeg's scaled decode
    assert half.shape == (256, 256, 3)
    pool = DetectorPool(1)
    tracker = FaceTracker(pool, detect_every=3)
    try:
        assert tracker.next_scale(40.0) == 1  # no face known yet: full size, so a small face is found
        full_box, tracked = tracker(face_rgb, scale=1)
        assert full_box is not None and not tracked and max(full_box.w, full_box.h) >= 80.0
        assert tracker.next_scale(40.0) == 1  # tracked frames keep their template's scale
        assert tracker(face_rgb, scale=1)[1] and tracker(face_rgb, scale=1)[1]
        assert tracker.next_scale(1000.0) == 1  # the face is too small for the crop at half size
        assert tracker.next_scale(40.0) == 2  # a detection is due and the face is large: half size from here on
        half_box, tracked = tracker(half, scale=2)
        assert not tracked and tracker.next_scale(40.0) == 2
        for a, b in zip(half_box.scaled(2).as_list(), full_box.as_list(), strict=True):
            assert abs(a - b) <= 4.0  # the same face, in full-frame pixels
        box, tracked = tracker(half, scale=2)  # tracked at half size
        assert tracked and abs(box.x - half_box.x) <= 1.5 and abs(box.y - half_box.y) <= 1.5
        box, tracked = tracker(face_rgb, scale=1)  # a frame at another scale than the template: detected afresh
        assert not tracked and abs(box.x - full_box.x) <= 1.0
    finally:
        pool.close()
