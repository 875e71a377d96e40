"""Shared fixtures: a real public-domain face photo (NASA astronaut portrait from scikit-image)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def face_rgb() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="session")
def face_jpeg(face_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def face_png(face_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def face_detector():
    from pkdot_contract.preprocessing.face import FaceDetector

    with FaceDetector() as detector:
        yield detector
