"""MP4 writing with PyAV: H.264 video (libx264, yuv420p) and optionally one mono AAC audio track.

Reproducible bytes: x264 runs with one thread and without macroblock-tree rate control (mbtree=0). With mbtree, the
x264 in PyAV's wheel was seen to write different bitstreams for the same frames within one process (it depends on
memory layout, e.g. on whether PyAV or OpenCV was imported first); without it, the same frames have always given
the same file (tests/training/test_synth.py checks the decoded frames of a seed).
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

VIDEO_CRF = 23  # x264 constant rate factor (its default)
VIDEO_PRESET = "veryfast"
AUDIO_BITRATE = 64_000


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
) -> None:
    """Encode uint8 RGB frames (N, H, W, 3) at `fps`, with float audio (M,) in [-1, 1] when given."""
    import av

    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 in yuv420p needs even frame sides, not {w}x{h}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.thread_count = 1  # a fixed thread count keeps x264's output reproducible
        video.options = {"crf": str(VIDEO_CRF), "preset": VIDEO_PRESET, "x264-params": "mbtree=0"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.bit_rate = AUDIO_BITRATE
            pcm = np.clip(audio, -1.0, 1.0).astype(np.float32)
            frame_size = sound.codec_context.frame_size or 1024
            sent = 0
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            if sound is not None:  # interleave: audio up to the end of this video frame
                until = len(pcm) if i == n - 1 else min(len(pcm), round((i + 1) / float(rate) * sample_rate))
                while sent + frame_size <= until or (i == n - 1 and sent < until):
                    chunk = pcm[sent : sent + frame_size]
                    # fltp is the encoder's own format: no resampling in between
                    aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                    aframe.sample_rate = sample_rate
                    aframe.pts = sent
                    container.mux(sound.encode(aframe))
                    sent += len(chunk)
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
