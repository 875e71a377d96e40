"""Pipeline stages of one 640x480 webcam frame, each measured alone, and the whole chain per frame.

Stages, with the service's own functions on the frames of the benchmark video (JPEG, as a client sends them):
    decode        pkdot_contract.preprocessing.media: header check + cv2 JPEG decode + BGR -> RGB
    detect        MediaPipe BlazeFace (service.faces.DetectorPool, the manifest's detector) on every frame
    track         service.faces.FaceTracker's correlation tracking alone (the frames between detections)
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

import numpy as np

from benchmarks.common import BenchContext, latency_stats, target, time_calls

NAME = "pipeline"
STREAM_FPS = 15.0
GAP_S = 0.01  # idle time before each paced stage call (long enough for an idle CPU to sleep)
PACED_CALLS, PACED_CALLS_QUICK = 150, 30


def run(ctx: BenchContext) -> dict:
    from benchmarks.bundle import bundled_models, open_session
    from benchmarks.video import jpeg_frames
    from pkdot_contract.preprocessing.crop import CropSpec, crop_face, to_model_input
    from pkdot_contract.preprocessing.media import decode_image, image_size_from_header
    from service.core.config import Settings
    from service.faces.detectors import DetectorPool, detector_config
    from service.faces.tracker import FaceTracker
    from service.inference.predictor import affect_prediction, pain_prediction, softmax

    settings = Settings()
    model = next(m for m in bundled_models(ctx) if set(m.graph_paths) == {"encoder", "head"})
    manifest = model.manifest
    spec = CropSpec.from_dict(manifest.preprocessing.crop.model_dump())
    sessions = {g: open_session(model, g, p, ctx) for g, p in model.graph_paths.items()}
    head_out = [o.name for o in sessions["head"].get_outputs()]
    labels = list(manifest.outputs.labels or [])
    frames = jpeg_frames(ctx, max_frames=60 if ctx.quick else None)
    detector_name, min_score = detector_config(manifest.preprocessing.detector, settings.face_min_score)
    detectors = DetectorPool(1, min_score, detector_name)
    every = settings.detect_every
    timing = {"warmup": 2, "min_calls": 20 if ctx.quick else 100, "min_seconds": 0.3 if ctx.quick else 3.0}

    def cycle(fn):
        """time fn(frame i) over the frames in turn."""
        i = [0]

        def call() -> None:
            fn(i[0] % len(frames))
            i[0] += 1
        return call

    try:
        rgbs = [decode_image(f) for f in frames]
        boxes = [detectors.largest(rgb) for rgb in rgbs]
        found = [b is not None for b in boxes]
        first = next(i for i, b in enumerate(boxes) if b is not None)
        crop_input = to_model_input(crop_face(rgbs[first], boxes[first], spec), spec)[None]
        emb = sessions["encoder"].run(["embedding"], {"frames": crop_input})[0]
        embeddings = np.repeat(emb[:, None], manifest.preprocessing.window, axis=1)  # (1, T, D)

        def decode(i: int) -> None:
            data = frames[i]
            image_size_from_header(data)
            decode_image(data, settings.max_image_pixels)

        def detect(i: int) -> None:
            detectors.largest(rgbs[i])

        tracker = FaceTracker(detectors, every, settings.track_min_score)

        def face(i: int) -> None:
            tracker(rgbs[i])

        track_only = FaceTracker(detectors, 10**9, settings.track_min_score)  # detects once, then only tracks
        track_only(rgbs[first])

        def track(i: int) -> None:
            track_only(rgbs[i])  # a lost face is detected again (counted in track_redetections)

        def preprocess(i: int) -> None:
            box = boxes[i] or boxes[first]
            to_model_input(crop_face(rgbs[i], box, spec), spec)

        def inference(i: int) -> None:
            sessions["encoder"].run(["embedding"], {"frames": crop_input})
            sessions["head"].run(head_out, {"embeddings": embeddings})

        out = dict(zip(head_out, sessions["head"].run(head_out, {"embeddings": embeddings}), strict=True))

        def postprocess(i: int) -> None:
            if manifest.task == "pain":
                pain_prediction(softmax(out["logits"][0]), labels)
            else:
                affect_prediction(out["va"][0], manifest.outputs.ranges)

        fns = {"decode": decode, "detect": detect, "track": track, "face": face, "preprocess": preprocess,
               "inference": inference, "postprocess": postprocess}
        stages = {name: latency_stats(time_calls(cycle(fn), **timing)) for name, fn in fns.items()}
        stages["face"]["detect_every"] = every
        stages["track"]["redetections"] = track_only.detections - 1
        paced: dict[str, list[float]] = {name: [] for name in fns}  # each stage alone after an idle gap
        for k in range(PACED_CALLS_QUICK if ctx.quick else PACED_CALLS):
            for name, fn in fns.items():
                time.sleep(GAP_S)
                t0 = time.perf_counter()
                fn(k % len(frames))
                paced[name].append(time.perf_counter() - t0)

        # the chain, per frame, with its own tracker and window, as one stream's frames go
        chain_tracker = FaceTracker(detectors, every, settings.track_min_score)
        window: list[np.ndarray] = []

        in_chain: dict[str, list[float]] = {name: [] for name in ("decode", "face", "preprocess", "inference",
                                                                  "postprocess")}

        def chain(i: int) -> None:
            """One frame as a stream's frames go; each step's time is kept, to set against the step alone."""
            t = [time.perf_counter()]
            rgb = decode_image(frames[i], settings.max_image_pixels)
            t.append(time.perf_counter())
            box, _ = chain_tracker(rgb)
            t.append(time.perf_counter())
            if box is None:
                return
            x = to_model_input(crop_face(rgb, box, spec), spec)[None]  # (1, 3, S, S)
            t.append(time.perf_counter())
            window.append(sessions["encoder"].run(["embedding"], {"frames": x})[0][0])
            del window[: -manifest.preprocessing.window]
            items = [window[0]] * (manifest.preprocessing.window - len(window)) + window
            o = dict(zip(head_out, sessions["head"].run(head_out, {"embeddings": np.stack(items)[None]}),
                         strict=True))
            t.append(time.perf_counter())
            if manifest.task == "pain":
                pain_prediction(softmax(o["logits"][0]), labels)
            else:
                affect_prediction(o["va"][0], manifest.outputs.ranges)
            t.append(time.perf_counter())
            for name, a, b in zip(in_chain, t[:-1], t[1:], strict=True):
                in_chain[name].append(b - a)

        def run_chain(n: int, pace: float) -> list[float]:
            times = []
            for k in range(n):
                if pace:
                    time.sleep(pace)
                t0 = time.perf_counter()
                chain(k % len(frames))
                times.append(time.perf_counter() - t0)
            return times

        t_chain = run_chain(len(frames) if ctx.quick else max(len(frames), 300), 0.0)
        chain_steps = {name: latency_stats(v) for name, v in in_chain.items()}
        t_chain_paced = run_chain(PACED_CALLS_QUICK if ctx.quick else PACED_CALLS, 1.0 / STREAM_FPS)
        handoff = _handoff(PACED_CALLS_QUICK if ctx.quick else PACED_CALLS)
    finally:
        detectors.close()

    order = ("decode", "face", "preprocess", "inference", "postprocess")
    paced_stats = {name: latency_stats(v) for name, v in paced.items()}
    stage_sum = sum(stages[s]["mean_ms"] for s in order)
    paced_sum = sum(paced_stats[s]["mean_ms"] for s in order)
    chain_stats, chain_paced = latency_stats(t_chain), latency_stats(t_chain_paced)
    ratio, ratio_paced = chain_stats["mean_ms"] / stage_sum, chain_paced["mean_ms"] / paced_sum
    return {"name": NAME, "model": model.name, "frame": {"width": 640, "height": 480,
                                                         "jpeg_bytes_mean": int(np.mean([len(f) for f in frames]))},
            "frames": len(frames), "faces_found": float(np.mean(found)), "stages": stages,
            "stages_paced": paced_stats, "sum_of_stages_ms": round(stage_sum, 4),
            "sum_of_stages_paced_ms": round(paced_sum, 4), "sum_over": list(order),
            "sum_detect_every_frame_ms": round(stage_sum - stages["face"]["mean_ms"] + stages["detect"]["mean_ms"], 4),
            "chain": chain_stats, "chain_paced": chain_paced, "chain_over_sum": round(ratio, 4),
            "chain_steps": chain_steps,
            "chain_step_over_alone": {k: round(v["mean_ms"] / stages[k]["mean_ms"], 3) for k, v in chain_steps.items()},
            "chain_paced_over_paced_sum": round(ratio_paced, 4), "thread_handoff": handoff,
            "targets": [target("in-process chain per frame / sum of stages, back to back (mean)", ratio, 1.3, "x"),
                        target("in-process chain per frame / sum of stages, paced as a 15 fps stream (mean)",
                               ratio_paced, 1.3, "x")],
            "settings": {"threads": ctx.n_threads, "detect_every": every, **timing, "paced_gap_s": GAP_S,
                         "stream_fps": STREAM_FPS}}


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
    return lines

