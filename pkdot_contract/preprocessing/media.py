"""Decoding of images, videos and audio into numpy arrays, in memory (nothing is written to disk).

Every failure is a `MediaError` with a message that says what to fix; callers map it to a 4xx or an exit code.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 40_000_000  # refuse larger images from their header, before decoding (decompression bombs)


class MediaError(ValueError):
    """Input that cannot be decoded: corrupt, truncated, empty, unsupported or too large."""


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header without decoding pixels; None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + length
    return None


def image_kind(data: bytes) -> str | None:
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, reduce: int = 1) -> np.ndarray:
    """JPEG or PNG bytes -> RGB uint8 (H, W, 3). Grey and alpha images are converted to RGB.

    `reduce` = 2, 4 or 8 decodes at about 1/reduce of the width and height: a JPEG is scaled inside its DCT (sizes
    rounded up), so the decode itself costs a fraction of the full one (libjpeg-turbo's scaled IDCT); a PNG is
    decoded, then resized (sizes rounded down)."""
    if not data:
        raise MediaError("the image is empty (0 bytes)")
    kind = image_kind(data)
    if kind is None:
        raise MediaError("not a JPEG or PNG image (unrecognised file signature)")
    size = image_size_from_header(data)
    if size is None:
        raise MediaError(f"the {kind.upper()} header is truncated or corrupt")
    w, h = size
    if w == 0 or h == 0:
        raise MediaError(f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise MediaError(f"the image is {w}x{h} pixels; the limit is {max_pixels} pixels")
    if reduce not in REDUCED_FLAGS:
        raise ValueError(f"reduce must be one of {sorted(REDUCED_FLAGS)}, not {reduce!r}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_FLAGS[reduce])
    if bgr is None:
        raise MediaError(f"the {kind.upper()} image could not be decoded (corrupt or truncated)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frames: int  # as declared by the container; 0 when unknown
    width: int
    height: int
    has_audio: bool


def _open(source: str | os.PathLike | bytes, kind: str = "video"):
    import av

    try:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source))
    except FileNotFoundError:
        raise MediaError(f"{kind} not found: {source}") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        name = f"the uploaded {kind}" if isinstance(source, bytes) else str(source)
        raise MediaError(f"{name} could not be opened as {kind}: {exc}") from None


def video_info(source: str | os.PathLike | bytes) -> VideoInfo:
    with _open(source) as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        v = container.streams.video[0]
        fps = float(v.average_rate or v.guessed_rate or 0.0)
        return VideoInfo(fps, int(v.frames or 0), v.codec_context.width, v.codec_context.height,
                         bool(container.streams.audio))


def iter_video_frames(source: str | os.PathLike | bytes, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames in order as RGB uint8 (H, W, 3)."""
    import av

    with _open(source) as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise MediaError(f"the video is corrupt after {n} frames: {exc}") from None


def read_video(source: str | os.PathLike | bytes, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """All frames (N, H, W, 3) uint8 RGB and the frame rate. Raises MediaError when there is no frame."""
    info = video_info(source)
    frames = list(iter_video_frames(source, max_frames))
    if not frames:
        raise MediaError("the video has no frames")
    return np.stack(frames), info.fps


def decode_audio(source: str | os.PathLike | bytes, sample_rate: int = 16000) -> np.ndarray:
    """The first audio stream, mixed to mono and resampled: float32 (N,) in [-1, 1]. WAV, MP4/AAC, ... via FFmpeg."""
    import av

    with _open(source, "audio") as container:
        if not container.streams.audio:
            raise MediaError("the file has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(f"the audio is corrupt: {exc}") from None
    if not chunks:
        raise MediaError("the audio stream has no samples")
    return np.concatenate(chunks).astype(np.float32)
