"""Hostile and borderline inputs, made in memory: tiny images, forged headers, empty videos, signals that lie."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np

from tests.service.conftest import biovid_csv, wav_bytes

__all__ = ["avi_without_frames", "biovid_csv", "deep_json", "forged_jpeg", "forged_png", "jpeg_1x1",
           "mp4_without_frames", "png_1x1", "signal_json", "wav_bytes", "wav_not_audio"]


def png_1x1() -> bytes:
    return cv2.imencode(".png", np.full((1, 1, 3), 128, np.uint8))[1].tobytes()


def jpeg_1x1() -> bytes:
    return cv2.imencode(".jpg", np.full((1, 1, 3), 128, np.uint8))[1].tobytes()


def forged_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height (a decompression bomb, as far as the header says)."""
    data = bytearray(png_1x1())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def forged_jpeg(width: int, height: int) -> bytes:
    """A 1x1 baseline JPEG whose start-of-frame segment claims width x height."""
    data = bytearray(jpeg_1x1())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _empty_video(container: str, codec: str, pix_fmt: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, pix_fmt
        out.start_encoding()
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def avi_without_frames() -> bytes:
    """An AVI with a video stream (MJPEG, 25 fps) that holds no frame."""
    return _empty_video("avi", "mjpeg", "yuvj420p")


def mp4_without_frames() -> bytes:
    """An MP4 whose only track never received a frame (FFmpeg sees no video stream in it)."""
    return _empty_video("mp4", "libx264", "yuv420p")


def wav_not_audio() -> bytes:
    """RIFF/WAVE signature, then garbage where the fmt and data chunks should be."""
    return b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4


def signal_json(rate_hz: float = 512.0, seconds: float = 5.5, channels: tuple[str, ...] = ("gsr", "ecg",
                "emg_trapezius"), value: object = 0.5) -> bytes:
    n = int(round(rate_hz * seconds))
    return json.dumps({"rate_hz": rate_hz, "channels": {c: [value] * n for c in channels}}).encode()


def deep_json(depth: int = 3000) -> bytes:
    """Valid-looking JSON nested deeper than Python's parser can recurse."""
    return b'{"rate_hz": 512, "channels": ' + b"[" * depth + b"]" * depth + b"}"
