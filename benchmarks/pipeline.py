"""Pipeline stages of one 640x480 webcam frame, each measured alone, and the whole chain per frame.

Stages, with the service's own functions on the frames of the benchmark video (JPEG, as a client sends them):
    decode        pkdot_contract.preprocessing.media: header check + cv2 JPEG decode + BGR -> RGB
    detect        MediaPipe BlazeFace (service.faces.detectors.DetectorPool, the manifest's detector) on every frame
    track         service.faces.tracker.FaceTracker's correlation tracking alone (the frames between detections)
    face          detect-then-track as streams run it (detect every `detect_every` frames, track between): the
                  mean cost per frame
    preprocess    face crop + normalisation (pkdot_contract.preprocessing.crop: the one function training also uses)
    inference     the streaming student's encoder (1 frame) + head (1 window), ONNX Runtime, service options
    postprocess   softmax / clipping into the response's prediction (service.inference.predictor)
The chain runs the same steps back to back per frame in one thread; its mean time per frame is compared with the
sum of the stages' means (target: within 1.3x). The service's own end-to-end time (one WebSocket stream) is set
against the same sum by `pkdot bench` when the e2e benchmark runs too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.common import BenchContext, latency_stats, target, time_calls

if TYPE_CHECKING:
    from pkdot_contract.preprocessing.face import FaceBox
    from service.faces.tracker import FaceTracker

NAME = "pipeline"
STREAM_FPS = 15.0
GAP_S = 0.01  # idle time before each paced stage call (long enough for an idle CPU to sleep)
PACED_CALLS, PACED_CALLS_QUICK = 150, 30
CHAIN_STEPS = ("decode", "face", "preprocess", "inference", "postprocess")  # one frame's path, in order
DETECT_INTERVALS = (1, 3, 5, 8, 10, 15)  # the tracking trade-off: detection every N frames


@dataclass
class _Bench:
    """The streaming student, its sessions and detectors, and the benchmark's frames with their faces."""

    model: object  # benchmarks.bundle.BundledModel
    settings: object  # service.core.config.Settings
    spec: object  # pkdot_contract.preprocessing.crop.CropSpec
    sessions: dict  # graph -> onnxruntime.InferenceSession
    detectors: object  # service.faces.detectors.DetectorPool
    frames: list[bytes]  # JPEG
    rgbs: list[np.ndarray] = field(default_factory=list)  # decoded, (H, W, 3)
    boxes: list = field(default_factory=list)  # FaceBox | None per frame
    first: int = 0  # the first frame with a face

    @property
    def manifest(self):
        return self.model.manifest

    @property
    def head_outputs(self) -> list[str]:
        return [o.name for o in self.sessions["head"].get_outputs()]

    def model_input(self, i: int) -> np.ndarray:
        """Frame i's face (the first face's box where none was found) as the encoder's input (1, 3, S, S)."""
        from pkdot_contract.preprocessing.crop import crop_face, to_model_input

        box = self.boxes[i] or self.boxes[self.first]
        return to_model_input(crop_face(self.rgbs[i], box, self.spec), self.spec)[None]

    def head(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """The head's outputs for a window of embeddings (1, T, D)."""
        names = self.head_outputs
        return dict(zip(names, self.sessions["head"].run(names, {"embeddings": embeddings}), strict=True))

    def postprocess(self, outputs: dict[str, np.ndarray]) -> None:
        """What a stream does with one row of outputs (service.inference.predictor: plain-Python fields)."""
        from service.inference.predictor import affect_fields, pain_fields, softmax

        if self.manifest.task == "pain":
            pain_fields(softmax(outputs["logits"][0].tolist()), list(self.manifest.outputs.labels or []))
        else:
            affect_fields(outputs["va"][0].tolist(), self.manifest.outputs.ranges)


def _open(ctx: BenchContext) -> _Bench:
    from benchmarks.bundle import bundled_models, open_session
    from benchmarks.video import jpeg_frames
    from pkdot_contract.preprocessing.crop import CropSpec
    from pkdot_contract.preprocessing.media import decode_image
    from service.core.config import Settings
    from service.faces.detectors import DetectorPool, detector_config

    settings = Settings()
    model = next(m for m in bundled_models(ctx) if set(m.graph_paths) == {"encoder", "head"})
    manifest = model.manifest
    detector_name, min_score = detector_config(manifest.preprocessing.detector, settings.face_min_score)
    bench = _Bench(model, settings, CropSpec.from_dict(manifest.preprocessing.crop.model_dump()),
                   {g: open_session(model, g, p, ctx) for g, p in model.graph_paths.items()},
                   DetectorPool(1, min_score, detector_name), jpeg_frames(ctx, max_frames=60 if ctx.quick else None))
    bench.rgbs = [decode_image(f) for f in bench.frames]
    bench.boxes = [bench.detectors.largest(rgb) for rgb in bench.rgbs]
    bench.first = next(i for i, b in enumerate(bench.boxes) if b is not None)
    return bench


def _stages(b: _Bench) -> tuple[dict[str, Callable[[int], None]], FaceTracker]:
    """Each stage alone, as a function of the frame index; and the tracker that only tracks (its re-detections
    are counted)."""
    from pkdot_contract.preprocessing.media import decode_image, image_size_from_header
    from service.faces.tracker import FaceTracker

    s, window = b.settings, b.manifest.preprocessing.window
    crop_input = b.model_input(b.first)
    emb = b.sessions["encoder"].run(["embedding"], {"frames": crop_input})[0]
    embeddings = np.repeat(emb[:, None], window, axis=1)  # (1, T, D)
    outputs = b.head(embeddings)
    tracker = FaceTracker(b.detectors, s.detect_every, s.track_min_score)
    track_only = FaceTracker(b.detectors, 10**9, s.track_min_score)  # detects once, then only tracks
    track_only(b.rgbs[b.first])

    def decode(i: int) -> None:
        image_size_from_header(b.frames[i])
        decode_image(b.frames[i], s.max_image_pixels)

    def inference(i: int) -> None:
        b.sessions["encoder"].run(["embedding"], {"frames": crop_input})
        b.head(embeddings)

    return {"decode": decode, "detect": lambda i: b.detectors.largest(b.rgbs[i]),
            "track": lambda i: track_only(b.rgbs[i]),  # a lost face is detected again (counted in redetections)
            "face": lambda i: tracker(b.rgbs[i]), "preprocess": b.model_input, "inference": inference,
            "postprocess": lambda i: b.postprocess(outputs)}, track_only


def _cycle(fn: Callable[[int], None], n: int) -> Callable[[], None]:
    """fn(frame i) over the n frames in turn, one per call."""
    i = [0]

    def call() -> None:
        fn(i[0] % n)
        i[0] += 1
    return call


def _paced(fns: dict[str, Callable[[int], None]], calls: int, n: int) -> dict[str, list[float]]:
    """Each stage alone after an idle gap, `calls` times: seconds per call."""
    paced: dict[str, list[float]] = {name: [] for name in fns}
    for k in range(calls):
        for name, fn in fns.items():
            time.sleep(GAP_S)
            t0 = time.perf_counter()
            fn(k % n)
            paced[name].append(time.perf_counter() - t0)
    return paced


class _Chain:
    """One stream's frames back to back in one thread, with its own tracker and window; each step's time is kept,
    to set against the step alone."""

    def __init__(self, b: _Bench) -> None:
        from service.faces.tracker import FaceTracker

        self.b = b
        self.tracker = FaceTracker(b.detectors, b.settings.detect_every, b.settings.track_min_score)
        self.window: list[np.ndarray] = []
        self.steps: dict[str, list[float]] = {name: [] for name in CHAIN_STEPS}

    def frame(self, i: int) -> None:
        from pkdot_contract.preprocessing.crop import crop_face, to_model_input
        from pkdot_contract.preprocessing.media import decode_image

        b, size = self.b, self.b.manifest.preprocessing.window
        t = [time.perf_counter()]
        rgb = decode_image(b.frames[i], b.settings.max_image_pixels)
        t.append(time.perf_counter())
        box, _ = self.tracker(rgb)
        t.append(time.perf_counter())
        if box is None:
            return
        x = to_model_input(crop_face(rgb, box, b.spec), b.spec)[None]  # (1, 3, S, S)
        t.append(time.perf_counter())
        self.window.append(b.sessions["encoder"].run(["embedding"], {"frames": x})[0][0])
        del self.window[:-size]
        outputs = b.head(np.stack([self.window[0]] * (size - len(self.window)) + self.window)[None])  # (1, T, D)
        t.append(time.perf_counter())
        b.postprocess(outputs)
        t.append(time.perf_counter())
        for name, start, stop in zip(self.steps, t[:-1], t[1:], strict=True):
            self.steps[name].append(stop - start)

    def run(self, n: int, pace: float) -> list[float]:
        times = []
        for k in range(n):
            if pace:
                time.sleep(pace)
            t0 = time.perf_counter()
            self.frame(k % len(self.b.frames))
            times.append(time.perf_counter() - t0)
        return times


def run(ctx: BenchContext) -> dict:
    b = _open(ctx)
    n, paced_calls = len(b.frames), PACED_CALLS_QUICK if ctx.quick else PACED_CALLS
    timing = {"warmup": 2, "min_calls": 20 if ctx.quick else 100, "min_seconds": 0.3 if ctx.quick else 3.0}
    try:
        fns, track_only = _stages(b)
        stages = {name: latency_stats(time_calls(_cycle(fn, n), **timing)) for name, fn in fns.items()}
        stages["face"]["detect_every"] = b.settings.detect_every
        stages["track"]["redetections"] = track_only.detections - 1
        paced = {name: latency_stats(v) for name, v in _paced(fns, paced_calls, n).items()}
        chain = _Chain(b)
        t_chain = chain.run(n if ctx.quick else max(n, 300), 0.0)
        chain_steps = {name: latency_stats(v) for name, v in chain.steps.items()}
        t_chain_paced = chain.run(paced_calls, 1.0 / STREAM_FPS)
        handoff = _handoff(paced_calls)
        tracking = _tracking(b)
    finally:
        b.detectors.close()
    return _result(b, stages, paced, latency_stats(t_chain), chain_steps, latency_stats(t_chain_paced), handoff,
                   tracking, {"threads": ctx.n_threads, "detect_every": b.settings.detect_every, **timing,
                    "paced_gap_s": GAP_S, "stream_fps": STREAM_FPS})


def _result(b: _Bench, stages: dict, paced: dict, chain: dict, chain_steps: dict, chain_paced: dict, handoff: dict,
            tracking: list[dict], settings: dict) -> dict:
    stage_sum = sum(stages[s]["mean_ms"] for s in CHAIN_STEPS)
    paced_sum = sum(paced[s]["mean_ms"] for s in CHAIN_STEPS)
    ratio, ratio_paced = chain["mean_ms"] / stage_sum, chain_paced["mean_ms"] / paced_sum
    return {"name": NAME, "model": b.model.name, "frame": {"width": 640, "height": 480,
                                                           "jpeg_bytes_mean": int(np.mean([len(f) for f in b.frames]))},
            "frames": len(b.frames), "faces_found": float(np.mean([box is not None for box in b.boxes])),
            "stages": stages, "stages_paced": paced, "sum_of_stages_ms": round(stage_sum, 4),
            "sum_of_stages_paced_ms": round(paced_sum, 4), "sum_over": list(CHAIN_STEPS),
            "sum_detect_every_frame_ms": round(stage_sum - stages["face"]["mean_ms"] + stages["detect"]["mean_ms"], 4),
            "chain": chain, "chain_paced": chain_paced, "chain_over_sum": round(ratio, 4),
            "chain_steps": chain_steps,
            "chain_step_over_alone": {k: round(v["mean_ms"] / stages[k]["mean_ms"], 3) for k, v in chain_steps.items()},
            "chain_paced_over_paced_sum": round(ratio_paced, 4), "thread_handoff": handoff, "tracking": tracking,
            "targets": [target("in-process chain per frame / sum of stages, back to back (mean)", ratio, 1.3, "x"),
                        target("in-process chain per frame / sum of stages, paced as a 15 fps stream (mean)",
                               ratio_paced, 1.3, "x")],
            "settings": settings}


def _iou(a: FaceBox, b: FaceBox) -> float:
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / (a.area + b.area - inter)


def _outputs(b: _Bench, boxes: list) -> np.ndarray:
    """What the stream reports per frame for faces at `boxes` (a frame without one keeps the last face seen): the
    expected pain level (N,) or valence and arousal (N, 2), over a window of the frames so far."""
    from pkdot_contract.preprocessing.crop import crop_face, to_model_input
    from service.inference.predictor import pain_fields, softmax

    window, last, out = b.manifest.preprocessing.window, b.boxes[b.first], []
    crops = []
    for rgb, box in zip(b.rgbs, boxes, strict=True):
        last = box or last
        crops.append(to_model_input(crop_face(rgb, last, b.spec), b.spec))
    emb = b.sessions["encoder"].run(["embedding"], {"frames": np.stack(crops)})[0]  # (N, D)
    for i in range(len(emb)):
        seen = emb[max(i - window + 1, 0):i + 1]
        outputs = b.head(np.concatenate([np.repeat(seen[:1], window - len(seen), 0), seen])[None])  # (1, T, D)
        if b.manifest.task == "pain":  # what a stream reports (service.inference.predictor)
            fields = pain_fields(softmax(outputs["logits"][0].tolist()), list(b.manifest.outputs.labels or []))
            out.append(fields["expected_level"])
        else:
            out.append(outputs["va"][0])
    return np.asarray(out)


def _tracking(b: _Bench) -> list[dict]:
    """Detect-then-track at several detection intervals against detection on every frame (the reference): how
    far the boxes and the model's outputs move from the reference, and what finding the face costs per frame."""
    from service.faces.tracker import FaceTracker

    reference = _outputs(b, b.boxes)
    spread = float(np.abs(np.diff(reference, axis=0)).mean())  # the outputs' own change from frame to frame
    rows = []
    for every in DETECT_INTERVALS:
        tracker = FaceTracker(b.detectors, every, b.settings.track_min_score)
        boxes, seconds = [], []
        for rgb in b.rgbs:
            t0 = time.perf_counter()
            boxes.append(tracker(rgb)[0])
            seconds.append(time.perf_counter() - t0)
        ious = np.array([_iou(a, r) for a, r in zip(boxes, b.boxes, strict=True) if a and r])
        found = [a is not None for a in boxes]
        delta = np.abs(_outputs(b, boxes) - reference)
        rows.append({"detect_every": every, "face_ms_per_frame": round(1000.0 * float(np.mean(seconds)), 4),
                     "detections": tracker.detections, "frames": len(boxes),
                     "faces_found": round(float(np.mean(found)), 4),
                     "iou_mean": round(float(ious.mean()), 4), "iou_p5": round(float(np.percentile(ious, 5)), 4),
                     "output_abs_diff_mean": round(float(delta.mean()), 5),
                     "output_abs_diff_p95": round(float(np.percentile(delta, 95)), 5),
                     "output_frame_to_frame_change": round(spread, 5)})
    return rows


def _handoff(calls: int) -> dict:
    """A no-op handed from an asyncio loop to a thread pool and back (run_in_executor), back to back and paced:
    what each of the service's hops between its event loop and its worker threads costs on this machine."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def measure(pool: ThreadPoolExecutor, pace: float) -> list[float]:
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(calls):
            if pace:
                await asyncio.sleep(pace)
            t0 = time.perf_counter()
            await loop.run_in_executor(pool, int)
            times.append(time.perf_counter() - t0)
        return times

    with ThreadPoolExecutor(1) as pool:
        hot = asyncio.run(measure(pool, 0.0))
        paced = asyncio.run(measure(pool, 1.0 / STREAM_FPS))
    return {"back_to_back": latency_stats(hot), "paced": latency_stats(paced)}


def table(result: dict) -> list[str]:
    s = result["stages"]
    lines = [f"{'stage':12} {'mean ms':>9} {'median ms':>10} {'p95 ms':>9}"]
    for name, r in s.items():
        lines.append(f"{name:12} {r['mean_ms']:9.3f} {r['median_ms']:10.3f} {r['p95_ms']:9.3f}")
    lines.append(f"sum of stages (decode, detect-then-track, preprocess, inference, postprocess): "
                 f"{result['sum_of_stages_ms']:.3f} ms; with detection on every frame "
                 f"{result['sum_detect_every_frame_ms']:.3f} ms")
    lines.append(f"chain per frame: mean {result['chain']['mean_ms']:.3f} ms, p95 {result['chain']['p95_ms']:.3f} ms "
                 f"= {result['chain_over_sum']:.2f}x the sum")
    if "chain_steps" in result:
        lines.append("steps inside the chain (mean ms, x alone): " + ", ".join(
            f"{k} {v['mean_ms']:.3f} ({result['chain_step_over_alone'][k]:.2f}x)"
            for k, v in result["chain_steps"].items()))
    p = result["stages_paced"]
    lines.append("paced (idle gaps as in a 15 fps stream): " + ", ".join(f"{k} {v['mean_ms']:.3f}"
                                                                          for k, v in p.items())
                 + f" ms; sum {result['sum_of_stages_paced_ms']:.3f} ms; chain {result['chain_paced']['mean_ms']:.3f} "
                 f"ms = {result['chain_paced_over_paced_sum']:.2f}x")
    h = result["thread_handoff"]
    lines.append(f"asyncio -> thread pool -> asyncio hand-off: {h['back_to_back']['mean_ms']:.3f} ms back to back, "
                 f"{h['paced']['mean_ms']:.3f} ms paced")
    for t in result.get("tracking", []):
        lines.append(f"detect every {t['detect_every']:2d}: face {t['face_ms_per_frame']:.3f} ms/frame, "
                     f"{t['detections']} detections, box IoU {t['iou_mean']:.3f} (p5 {t['iou_p5']:.3f}) vs detecting "
                     f"every frame, output difference {t['output_abs_diff_mean']:.4f} "
                     f"(p95 {t['output_abs_diff_p95']:.4f})")
    return lines

