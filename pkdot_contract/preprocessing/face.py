"""Face detection with MediaPipe's BlazeFace models (bundled in the mediapipe 0.10.21 wheel).

A detector is named in the manifest (`preprocessing.detector.name`, one of `DETECTORS`): the face finder a model was
trained with is the one it is served with. The detector is not thread-safe: a `FaceDetector` serialises calls with a
lock, and each worker thread that needs throughput owns its own detector.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

# manifest name -> MediaPipe's model_selection: short range (faces within ~2 m, the webcam case) or full range
DETECTORS = {"mediapipe-blazeface-short-range": 0, "mediapipe-blazeface-full-range": 1}
DEFAULT_DETECTOR = "mediapipe-blazeface-short-range"


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the frame it was found in: top-left corner, width, height, and score."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @property
    def area(self) -> float:
        return self.w * self.h

    def as_list(self) -> list[float]:
        return [self.x, self.y, self.w, self.h]

    def scaled(self, factor: float) -> FaceBox:
        """The same face in a frame resized by `factor` (2: twice the width and height)."""
        return FaceBox(self.x * factor, self.y * factor, self.w * factor, self.h * factor, self.score)


class FaceDetector:
    """Largest-face detector over RGB uint8 frames (H, W, 3).

    name: one of `DETECTORS` (default BlazeFace short range).
    """

    def __init__(self, min_score: float = 0.5, name: str = DEFAULT_DETECTOR) -> None:
        if name not in DETECTORS:
            raise ValueError(f"unknown face detector {name!r}; known: {', '.join(DETECTORS)}")
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), not {min_score}")
        from mediapipe.python.solutions import face_detection  # imported lazily: it loads TFLite

        self.min_score = min_score
        self.name = name
        self._detector = face_detection.FaceDetection(
            model_selection=DETECTORS[name], min_detection_confidence=min_score
        )
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """All faces in the frame, largest first. `rgb` is uint8 (H, W, 3) in RGB order."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        with self._lock:
            detections = self._run(np.ascontiguousarray(rgb))
        faces = []
        for det in detections:
            rel = det.location_data.relative_bounding_box
            x0, y0 = max(rel.xmin * w, 0.0), max(rel.ymin * h, 0.0)
            x1, y1 = min((rel.xmin + rel.width) * w, w), min((rel.ymin + rel.height) * h, h)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            faces.append(FaceBox(x0, y0, x1 - x0, y1 - y0, float(det.score[0])))
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _run(self, rgb: np.ndarray) -> list:
        """MediaPipe's detections for one frame: what `FaceDetection.process` does for an image, without the result
        type it builds on every call (a new namedtuple class per frame: most of a detection's Python time).
        Falls back to `process` where the solution's internals differ from mediapipe 0.10.21's."""
        d = self._detector
        try:
            ((stream, kind),) = d._input_stream_type_info.items()
            out_kind = d._output_stream_type_info["detections"]
            graph, outputs = d._graph, d._graph_outputs
        except (AttributeError, KeyError, ValueError, TypeError):
            return d.process(rgb).detections or []
        outputs.clear()
        d._simulated_timestamp += 33333  # as process(): a 30 fps video's timestamps
        graph.add_packet_to_input_stream(stream=stream, packet=d._make_packet(kind, rgb).at(d._simulated_timestamp))
        graph.wait_until_idle()
        packet = outputs.get("detections")
        return [] if packet is None else d._get_packet_content(out_kind, packet) or []

    def largest(self, rgb: np.ndarray) -> FaceBox | None:
        faces = self.detect(rgb)
        return faces[0] if faces else None

    def close(self) -> None:
        with self._lock:
            self._detector.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
