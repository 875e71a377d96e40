"""The face video the benchmarks stream: 640x480 webcam-sized frames, sent as the `pkdot stream` client sends them.

Default: `pkdot synth biovid` rendered at 640x480 (one subject, one sample per pain level: 5 clips of 5.5 s at
25 fps). Its faces are a real public-domain portrait (NASA's astronaut photo, from scikit-image) deformed by
facial action units, with head and camera motion: a real face texture, moving as a person in front of a webcam
does. `--video FILE` streams any other recording instead. Frames are resampled to the stream's rate and JPEG
encoded once, up front (quality 85, at most 640 px wide: the client's defaults), so the load generator spends
no CPU on encoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import BenchContext

SIZE = (640, 480)
JPEG_QUALITY = 85


def face_videos(ctx: BenchContext) -> list[Path]:
    """The video files to stream (generated into the cache once)."""
    if ctx.video is not None:
        return [ctx.video]
    root = ctx.cache_dir / "video-640x480"
    done = root / ".complete"
    if not done.is_file():
        from training.data.synth import write_biovid

        ctx.log("  rendering a 640x480 face video (pkdot synth biovid, 1 subject; once, cached)")
        write_biovid(root, subjects=1, samples_per_class=1, seed=0, size=SIZE, force=True, workers=1)
        done.write_text("ok\n")
    return sorted(root.glob("video/*/*.mp4"))


def frames_path(ctx: BenchContext, fps: float = 15.0) -> Path:
    """An npz of the videos' frames at `fps` (nearest earlier source frame) as the JPEG bytes a client sends:
    `data` (all bytes, concatenated) and `ends` (each frame's end offset). Written once into the cache."""
    import cv2

    from service.client.sources import encode_jpeg

    source = f"-{ctx.video.stem}" if ctx.video else ""
    path = ctx.cache_dir / f"frames-{fps:g}fps-q{JPEG_QUALITY}{source}.npz"
    if path.is_file():
        return path
    frames = []
    for video in face_videos(ctx):
        capture = cv2.VideoCapture(str(video))
        src_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        due, index = 0.0, 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index / src_fps + 1e-9 >= due:
                frames.append(encode_jpeg(bgr, SIZE[0], JPEG_QUALITY))
                due += 1.0 / fps
            index += 1
        capture.release()
    if not frames:
        raise RuntimeError(f"no frame could be read from {face_videos(ctx)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, data=np.frombuffer(b"".join(frames), np.uint8), ends=np.cumsum([len(f) for f in frames]))
    return path


def read_frames(path: Path) -> list[bytes]:
    with np.load(path) as z:
        data, ends = z["data"].tobytes(), z["ends"].tolist()
    return [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def jpeg_frames(ctx: BenchContext, fps: float = 15.0, max_frames: int | None = None) -> list[bytes]:
    """The benchmark video's frames at `fps`, as JPEG bytes."""
    frames = read_frames(frames_path(ctx, fps))
    return frames[:max_frames] if max_frames else frames
