"""Detect-then-track for streams: a stream does not need full detection on every frame.

`FaceTracker` detects every `detect_every` frames (through the shared `DetectorPool`) and in between follows the face
by normalised cross-correlation of its last detected appearance (a grey, downscaled template) in a search window
around its last position. A weak match re-detects at once.

Frames may be decoded at half size (`next_scale`): a stream whose face is large enough for the crop at half the
resolution is decoded, detected and tracked at half size from its next detection on, which costs about a quarter
of the pixels. Boxes are in pixels of the frame the tracker was given.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from pkdot_contract.preprocessing.face import FaceBox
from service.faces.detectors import DetectorPool

TRACK_TEMPLATE_PX = 32.0  # the face is tracked downscaled by an integer factor to about this width
TRACK_SEARCH = 0.5  # the search window grows the last box by this fraction of its size on each side


@dataclass(frozen=True)
class _Track:
    """What the tracker follows: the last box, the template of its last detection, frames since that detection."""

    box: FaceBox
    template: np.ndarray | None  # grey, downscaled by k; None: too small or too flat to track
    k: int = 1  # integer downscale factor of the template
    offset: tuple[float, float] = (0.0, 0.0)  # from the template's origin to the box's corner
    since_detection: int = 0
    scale: int = 1  # the frames followed are decoded at 1/scale of their full width and height


class FaceTracker:
    """Detect-then-track over the frames of one stream (calls come one at a time, from any thread).

    `reset` may come from another thread while a frame is in process (a stream's control message, on the event
    loop): what that frame finds is then not kept, so the face the reset forgot does not come back.
    """

    def __init__(self, detectors: DetectorPool, detect_every: int = 10, min_score: float = 0.6) -> None:
        self.detectors, self.detect_every, self.min_score = detectors, detect_every, min_score
        self.detections = 0
        self.tracked = 0
        self._lock = threading.Lock()
        self._state: _Track | None = None
        self._generation = 0  # bumped by every reset

    def reset(self) -> None:
        """Forget the face: the next frame is detected afresh."""
        with self._lock:
            self._generation += 1
            self._state = None

    def next_scale(self, min_side: float) -> int:
        """How much the next frame may be reduced when it is decoded: 1 (full size) or 2 (half the width and height).

        A frame to be tracked keeps its template's scale. A frame to be detected is reduced when the face last seen
        had a longer side of at least 2 x `min_side` full-frame pixels (`min_side`: the face size at which the
        model's crop takes the frame's pixels one to one, so half size still gives the crop every pixel it uses);
        with no face known it is decoded at full size, so a small or distant face is found."""
        with self._lock:
            state = self._state
        if state is None:
            return 1
        if state.template is not None and state.since_detection < self.detect_every - 1:
            return state.scale
        return 2 if max(state.box.w, state.box.h) * state.scale >= 2.0 * min_side else 1

    def __call__(self, rgb: np.ndarray, timings: dict[str, float] | None = None,
                 scale: int = 1) -> tuple[FaceBox | None, bool]:
        """(box, tracked): the face in this frame (pixels of `rgb`) and whether it was tracked rather than detected.
        `scale`: `rgb` was decoded at 1/scale of the full frame (see `next_scale`)."""
        with self._lock:
            state, generation = self._state, self._generation
        box, state, tracked = self._find(rgb, state, timings, scale)
        with self._lock:
            if self._generation == generation:  # no reset since this frame began
                self._state = state
        return box, tracked

    def _find(self, rgb: np.ndarray, state: _Track | None, timings: dict[str, float] | None, scale: int
              ) -> tuple[FaceBox | None, _Track | None, bool]:
        """(box, the state after this frame, tracked)."""
        if state is not None and state.scale == scale and state.since_detection < self.detect_every - 1:
            t0 = time.perf_counter()
            box = self._track(rgb, state)
            if timings is not None:
                timings["track"] = timings.get("track", 0.0) + (time.perf_counter() - t0) * 1000.0
            if box is not None:
                self.tracked += 1
                return box, replace(state, box=box, since_detection=state.since_detection + 1), True
        t0 = time.perf_counter()
        box = self.detectors.largest(rgb)
        if timings is not None:
            timings["detect"] = timings.get("detect", 0.0) + (time.perf_counter() - t0) * 1000.0
        self.detections += 1
        if box is None:
            return None, None, False
        return box, self._detected(rgb, box, scale), False

    def _detected(self, rgb: np.ndarray, box: FaceBox, scale: int) -> _Track:
        """The state after a detection: the box and, when frames are tracked in between, its template."""
        if self.detect_every <= 1:
            return _Track(box, None, scale=scale)
        k = max(int(round(box.w / TRACK_TEMPLATE_PX)), 1)
        template, ox, oy = _grey(rgb, k, box.x, box.y, box.x + box.w, box.y + box.h)
        trackable = min(template.shape) >= 4 and template.std() > 1.0
        return _Track(box, template if trackable else None, k, (box.x - ox, box.y - oy), scale=scale)

    def _track(self, rgb: np.ndarray, state: _Track) -> FaceBox | None:
        box, template, k, (dx, dy) = state.box, state.template, state.k, state.offset
        if template is None:
            return None
        th, tw = template.shape
        mx, my = TRACK_SEARCH * tw * k, TRACK_SEARCH * th * k
        tx, ty = box.x - dx, box.y - dy  # the template's origin at the last position
        region, ox, oy = _grey(rgb, k, tx - mx, ty - my, tx + tw * k + mx + k, ty + th * k + my + k)
        if region.shape[0] < th or region.shape[1] < tw:
            return None
        scores = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if not np.isfinite(best) or best < self.min_score:
            return None
        x = ox + (bx + _subpixel(scores[by, :], bx)) * k + dx
        y = oy + (by + _subpixel(scores[:, bx], by)) * k + dy
        h_img, w_img = rgb.shape[:2]
        x, y = min(max(x, 0.0), max(w_img - box.w, 0.0)), min(max(y, 0.0), max(h_img - box.h, 0.0))
        return FaceBox(x, y, box.w, box.h, box.score)


def _grey(rgb: np.ndarray, k: int, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, int, int]:
    """The grey region [x0, x1) x [y0, y1) of the frame, downscaled by the integer factor k, and its origin.

    The origin is snapped to a multiple of k, so that pixel u of any such region is frame pixel origin + u * k:
    template and search window share one grid. Only the region is converted and resized, not the frame.
    """
    h, w = rgb.shape[:2]
    ox, oy = max(int(x0) // k * k, 0), max(int(y0) // k * k, 0)
    ex, ey = min(int(np.ceil(x1)), w // k * k), min(int(np.ceil(y1)), h // k * k)
    ex, ey = ox + max(ex - ox, 0) // k * k, oy + max(ey - oy, 0) // k * k
    grey = cv2.cvtColor(rgb[oy:ey, ox:ex], cv2.COLOR_RGB2GRAY)  # a view: OpenCV reads the rows in place
    if k > 1 and grey.size:
        grey = cv2.resize(grey, (grey.shape[1] // k, grey.shape[0] // k), interpolation=cv2.INTER_AREA)
    return grey, ox, oy


def _subpixel(line: np.ndarray, i: int) -> float:
    """Offset in (-0.5, 0.5) of a peak's vertex from the parabola through the peak and its two neighbours."""
    if i <= 0 or i >= len(line) - 1:
        return 0.0
    left, centre, right = float(line[i - 1]), float(line[i]), float(line[i + 1])
    curvature = left - 2.0 * centre + right
    return 0.0 if curvature >= 0 else float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
