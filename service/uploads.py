"""REST uploads: the multipart form read into memory, and an uploaded clip turned into face frames.

Nothing touches the disk: Starlette spools uploads over 1 MB into temporary files, so the form is parsed with a
spool limit above the request limit (the body-size middleware stops larger bodies first).

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
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

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
from service.errors import BadInput, InvalidField, TooLarge, UnsupportedMedia
from service.faces import DetectorPool
from service.predictor import Predictor


class InMemoryMultiPartParser(MultiPartParser):
    spool_max_size = 1 << 62  # never roll over to a temporary file


@dataclass
class Upload:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def label(self) -> str:
        return repr(self.filename) if self.filename else f"field {self.field!r}"


async def read_form(request: Request, settings: Settings) -> dict[str, list[Upload]]:
    """The form's parts by field name, in order. 415 when not multipart, 400 when malformed."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        shown = content_type.split(";")[0] or "none"
        raise UnsupportedMedia(f"send multipart/form-data with the image(s) or video in field 'file' "
                               f"(content type was {shown})")
    parser = InMemoryMultiPartParser(request.headers, request.stream(), max_files=settings.max_files + 8,
                                     max_fields=16, max_part_size=settings.max_request_bytes)
    try:
        form = await parser.parse()
    except ClientDisconnect:  # nobody will read the answer; recorded as the client's error, not a 500
        raise BadInput("the client closed the connection before the upload was complete") from None
    except MultiPartException as exc:
        if exc.message.startswith("Too many"):
            raise InvalidField(f"too many form parts; the limit is {settings.max_files} files per request") from None
        raise BadInput(f"malformed multipart body: {exc.message}") from None
    parts: dict[str, list[Upload]] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                value.file.seek(0)
                upload = Upload(name, value.filename, value.content_type, value.file.read())
            else:
                upload = Upload(name, None, "text/plain", value.encode())
            parts.setdefault(name, []).append(upload)
    finally:
        await form.close()
    return parts


def file_parts(parts: dict[str, list[Upload]], settings: Settings) -> list[Upload]:
    files = parts.get("file", [])
    if not files:
        fields = ", ".join(sorted(parts)) or "none"
        raise InvalidField(f"field 'file' is required: one image, the field repeated for a clip, or one video "
                           f"(fields sent: {fields})")
    if len(files) > settings.max_files:
        raise InvalidField(f"{len(files)} files sent; the limit is {settings.max_files} frames per request")
    return files


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
