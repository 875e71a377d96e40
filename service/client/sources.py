"""Frames to stream: a webcam (an OpenCV device index such as `0`) or a video file, read with OpenCV."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_FILE_FPS = 25.0  # for a file whose container states no frame rate


class SourceError(Exception):
    """The source cannot be opened or read (no such file, not a video, no camera at that index)."""


@dataclass
class Frame:
    index: int  # 0-based, in the source
    t: float  # seconds: media time in a file, time since the first frame for a camera
    bgr: np.ndarray  # (H, W, 3) uint8


class FrameSource:
    """`spec` is a device index ("0") or a path. A file is checked by decoding its first frame at once."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.live = spec.isdigit()
        if self.live:
            self.capture = cv2.VideoCapture(int(spec))
            if not self.capture.isOpened():
                raise SourceError(f"no camera at device index {spec} (or it is in use by another program)")
        else:
            path = Path(spec)
            if not path.is_file():
                raise SourceError(f"no such file: {spec}")
            self.capture = cv2.VideoCapture(str(path))
            if not self.capture.isOpened():
                raise SourceError(f"{spec} is not a video OpenCV can read")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps <= 1000 else (None if self.live else DEFAULT_FILE_FPS)
        self.index = 0
        self.t0: float | None = None
        ok, first = self.capture.read()
        if not ok or first is None:
            self.capture.release()
            raise SourceError(f"the camera at index {spec} delivers no frames" if self.live
                              else f"{spec} holds no frame that can be decoded (not a video, or damaged)")
        self._first: np.ndarray | None = first

    def read(self) -> Frame | None:
        """The next frame; None at the end of a file (blocking: call it from a thread)."""
        if self._first is not None:
            bgr, self._first = self._first, None
        else:
            ok, bgr = self.capture.read()
            if not ok or bgr is None:
                if self.live:
                    raise SourceError(f"the camera at index {self.spec} stopped delivering frames")
                return None
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        t = now - self.t0 if self.live else self.index / self.fps
        frame = Frame(self.index, t, bgr)
        self.index += 1
        return frame

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_jpeg(bgr: np.ndarray, max_width: int, quality: int) -> bytes:
    """The frame scaled down to at most `max_width` pixels wide (aspect kept), as JPEG."""
    h, w = bgr.shape[:2]
    if w > max_width:
        bgr = cv2.resize(bgr, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("a frame could not be encoded as JPEG")
    return buf.tobytes()
