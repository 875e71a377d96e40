"""An uploaded clip turned into face frames: decode, detect, crop, one frame at a time.

A clip is one image, several images (the field repeated, frames in order) or one short video; a video is
resampled to the model's frame rate. Frames are scanned one at a time (decode, detect, crop) and only the crops of
the last T face frames are kept, so memory does not grow with the clip.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pkdot_contract.preprocessing.face import FaceBox
from pkdot_contract.preprocessing.media import (
    MediaError,
    decode_image,
    image_kind,
    image_size_from_header,
    iter_video_frames,
    video_info,
)
from service.core.config import Settings
from service.core.errors import BadInput, TooLarge, UnsupportedMedia
from service.faces.detectors import DetectorPool
from service.inference.predictor import Predictor
from service.uploads.form import Upload

# -- clips -----------------------------------------------------------------------------------------------------------


@dataclass
class FaceFrame:
    index: int  # position of the frame in the clip (after resampling)
    box: FaceBox
    inputs: list[np.ndarray]  # one model input (3, S, S) per predictor, in the order given


@dataclass
class Scan:
    frames: int = 0  # frames scanned
    faces: int = 0  # frames with a face
    kept: list[FaceFrame] = field(default_factory=list)  # the last `window` face frames, oldest first
    fps: float = 0.0  # frame rate of the scanned frames (the model's, for a resampled video)


def _timed(frames: Iterator[np.ndarray], timings: dict[str, float]) -> Iterator[np.ndarray]:
    while True:
        t0 = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        finally:
            timings["decode"] = timings.get("decode", 0.0) + (time.perf_counter() - t0) * 1000.0
        yield frame


def _images(files: Sequence[Upload], settings: Settings) -> Iterator[np.ndarray]:
    for i, f in enumerate(files):
        where = f"file {i + 1} ({f.label})" if len(files) > 1 else f"the image {f.label}"
        size = image_size_from_header(f.data)
        if size is not None and size[0] * size[1] > settings.max_image_pixels:
            raise TooLarge(f"{where} is {size[0]}x{size[1]} pixels; the limit is {settings.max_image_pixels} pixels")
        try:
            yield decode_image(f.data, settings.max_image_pixels)
        except MediaError as exc:
            raise BadInput(f"{where}: {exc}") from None


def looks_like_video(data: bytes) -> bool:
    """A container signature: MP4/MOV (ftyp, moov, mdat...), AVI, Matroska/WebM, Ogg, FLV, MPEG-TS."""
    return (data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
            or (data[:4] == b"RIFF" and data[8:12] == b"AVI ") or data[:4] in (b"\x1aE\xdf\xa3", b"OggS")
            or data[:3] == b"FLV" or (len(data) > 188 and data[0] == 0x47 and data[188] == 0x47))


def _video(upload: Upload, settings: Settings, frame_rate: float) -> tuple[Iterator[np.ndarray], float]:
    try:
        info = video_info(upload.data)
    except MediaError as exc:
        if looks_like_video(upload.data) and "no video stream" not in str(exc):
            raise BadInput(f"{upload.label} is a corrupt or truncated video ({exc})") from None
        raise UnsupportedMedia(f"{upload.label} is neither a JPEG/PNG image nor a video with a video stream "
                               f"({exc})") from None
    if info.fps > 0 and info.frames > 0 and info.frames / info.fps > settings.max_video_seconds:
        raise TooLarge(f"the video lasts {info.frames / info.fps:.1f} s; the limit is {settings.max_video_seconds:g} s")
    step = 1.0 / frame_rate if info.fps > frame_rate * 1.01 else 0.0  # resample only when the video is faster

    def frames() -> Iterator[np.ndarray]:
        next_t, kept = 0.0, 0
        try:
            for i, rgb in enumerate(iter_video_frames(upload.data)):
                t = i / info.fps if info.fps > 0 else 0.0
                if t > settings.max_video_seconds:
                    raise TooLarge(f"the video lasts over {settings.max_video_seconds:g} s, the limit")
                if step and t + 1e-6 < next_t:
                    continue
                next_t += step
                kept += 1
                if kept > settings.max_clip_frames:
                    raise TooLarge(f"the video has over {settings.max_clip_frames} frames at {frame_rate:g} fps, "
                                   "the limit")
                yield rgb
        except MediaError as exc:
            raise BadInput(str(exc)) from None
        if kept == 0:
            raise BadInput("the video has no frames")

    return frames(), (frame_rate if step else info.fps)


def clip_frames(files: Sequence[Upload], settings: Settings, frame_rate: float) -> tuple[Iterator[np.ndarray], float]:
    """Frames of the upload, lazily decoded, and their frame rate (0 when unknown: a series of images)."""
    kinds = [image_kind(f.data) for f in files]
    for f in files:
        if not f.data:
            raise BadInput(f"{f.label} is empty (0 bytes)")
    if len(files) == 1 and kinds[0] is None:
        return _video(files[0], settings, frame_rate)
    for i, (f, kind) in enumerate(zip(files, kinds, strict=True)):
        if kind is None:
            raise UnsupportedMedia(f"file {i + 1} ({f.label}) is not a JPEG or PNG image; send images, or one "
                                   "video on its own")
    return _images(files, settings), 0.0


def scan_clip(files: Sequence[Upload], settings: Settings, detectors: DetectorPool,
              predictors: Sequence[Predictor], timings: dict[str, float]) -> Scan:
    """Decode, detect and preprocess every frame; keep the last T face frames. Blocking: run it off the loop."""
    window = max(p.window for p in predictors)
    frame_rate = predictors[0].model.manifest.preprocessing.frame_rate
    frames, fps = clip_frames(files, settings, frame_rate)
    scan = Scan(fps=fps or frame_rate)
    kept: deque[FaceFrame] = deque(maxlen=window)
    for rgb in _timed(frames, timings):
        t0 = time.perf_counter()
        box = detectors.largest(rgb)
        t1 = time.perf_counter()
        timings["detect"] = timings.get("detect", 0.0) + (t1 - t0) * 1000.0
        if box is not None:
            kept.append(FaceFrame(scan.frames, box, [p.preprocess(rgb, box) for p in predictors]))
            scan.faces += 1
            timings["preprocess"] = timings.get("preprocess", 0.0) + (time.perf_counter() - t1) * 1000.0
        scan.frames += 1
    scan.kept = list(kept)
    return scan
