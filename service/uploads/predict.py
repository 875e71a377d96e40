"""REST inference: an uploaded image, clip or video (and, for the teacher, a signal) -> the response bodies.

The prediction for a clip is the model's output over its last T face frames: what a stream would report after the
clip's last frame. Frames without a face are skipped; a clip without any face is a result (`face_detected:
false`, `prediction: null`), not an error.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from starlette.requests import Request

from service.context import ServiceContext
from service.core.errors import InvalidField
from service.core.schemas import Face, ModelPrediction, ModelRef, PredictResponse, TeacherResponse
from service.inference.predictor import Predictor, agreement
from service.inference.privileged import privileged_input
from service.uploads.clips import FaceFrame, Scan, scan_clip
from service.uploads.form import Upload, file_parts, read_form


def _face(frame: FaceFrame | None) -> Face | None:
    if frame is None:
        return None
    b = frame.box
    return Face(box=[round(v, 1) for v in b.as_list()], score=min(max(b.score, 0.0), 1.0))


def _inputs(scan: Scan, k: int) -> np.ndarray:
    return np.stack([f.inputs[k] for f in scan.kept])  # (N, 3, S, S)


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}


def _observe(ctx: ServiceContext, timings: dict[str, float]) -> None:
    for stage in ("decode", "detect", "preprocess", "total"):  # inference: per batch; postprocess: timed
        if stage in timings:
            ctx.metrics.observe(stage, timings[stage] / 1000.0)


async def predict_upload(ctx: ServiceContext, request: Request, task: str, model_name: str | None) -> PredictResponse:
    t_start = time.perf_counter()
    predictor = ctx.predictor(ctx.registry.student(task, model_name))  # 404 before the body is read
    files = file_parts(await read_form(request, ctx.settings), ctx.settings)
    timings: dict[str, float] = {}
    scan = await ctx.run_blocking(scan_clip, files, ctx.settings, ctx.detector_for(predictor.model), [predictor],
                                  timings, pool=ctx.clip_pool)
    prediction = None
    if scan.kept:
        t0 = time.perf_counter()
        items = await predictor.encode(_inputs(scan, 0))
        outputs = await predictor.predict_window(items)
        timings["inference"] = (time.perf_counter() - t0) * 1000.0
        with ctx.metrics.timer("postprocess", timings):
            prediction = predictor.postprocess(outputs)
    timings["total"] = (time.perf_counter() - t_start) * 1000.0
    _observe(ctx, timings)
    m = predictor.model.manifest
    return PredictResponse(model=ModelRef(name=m.name, version=m.version), task=task,
                           face_detected=bool(scan.kept), face=_face(scan.kept[-1] if scan.kept else None),
                           prediction=prediction, frames_received=scan.frames, frames_used=len(scan.kept),
                           timings_ms=_ms(timings))


def _signal_part(parts: dict[str, list[Upload]]) -> Upload:
    signals = parts.get("signal", [])
    if len(signals) != 1:
        raise InvalidField(f"field 'signal' is required once (sent {len(signals)}): a BioVid biosignal CSV or JSON "
                           "{rate_hz, channels} for pain, a WAV for affect")
    return signals[0]


async def compare_teacher(ctx: ServiceContext, request: Request, task: str, model_name: str | None
                          ) -> TeacherResponse:
    t_start = time.perf_counter()
    teacher = ctx.predictor(ctx.registry.teacher(task))  # 404 when unknown or not enabled
    student = ctx.predictor(ctx.registry.student(task, model_name))
    parts = await read_form(request, ctx.settings)
    files = file_parts(parts, ctx.settings)
    signal = _signal_part(parts)
    timings: dict[str, float] = {}
    scan = await ctx.run_blocking(scan_clip, files, ctx.settings, ctx.detector_for(student.model),
                                  [teacher, student], timings, pool=ctx.clip_pool)
    spec = teacher.model.manifest.preprocessing.privileged
    graph_input = next(i for i in teacher.model.manifest.graphs["model"].inputs if i.name == "privileged")
    centre_s = scan.kept[-1].index / scan.fps if scan.kept and scan.fps else 0.0
    t0 = time.perf_counter()
    privileged = await ctx.run_blocking(privileged_input, spec, graph_input, signal.data, signal.filename, centre_s,
                                        pool=ctx.clip_pool)
    timings["signal"] = (time.perf_counter() - t0) * 1000.0
    teacher_out = student_out = agree = None
    if scan.kept:
        t0 = time.perf_counter()
        t_pred, s_pred = await asyncio.gather(teacher.predict_inputs(_inputs(scan, 0), privileged.array),
                                              student.predict_inputs(_inputs(scan, 1)))
        timings["inference"] = (time.perf_counter() - t0) * 1000.0
        teacher_out = ModelPrediction(model=_ref(teacher), prediction=t_pred)
        student_out = ModelPrediction(model=_ref(student), prediction=s_pred)
        agree = agreement(t_pred, s_pred)
    timings["total"] = (time.perf_counter() - t_start) * 1000.0
    _observe(ctx, timings)
    return TeacherResponse(task=task, face_detected=bool(scan.kept), face=_face(scan.kept[-1] if scan.kept else None),
                           teacher=teacher_out, student=student_out, agreement=agree, frames_received=scan.frames,
                           frames_used=len(scan.kept), signal=privileged.description, timings_ms=_ms(timings))


def _ref(predictor: Predictor) -> ModelRef:
    m = predictor.model.manifest
    return ModelRef(name=m.name, version=m.version)
