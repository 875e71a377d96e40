"""WebSocket streaming: one `StreamSession` per connection.

A session runs two tasks. The receiver reads every message as it arrives: a binary frame goes into a single slot
(`FrameSlot`: a frame still waiting there is dropped and counted, the newest frame wins, so a slow server or a fast
client never builds a queue), a text message is a JSON control message handled at once. The processor takes the
slot's frame, decodes it, finds the face (detect-then-track), crops it, runs the encoder and the temporal head
through the shared batchers (or in its own thread: inline), and sends one result. Per connection the memory is
bounded: one waiting frame, one in process, and the window of T embeddings. The window samples the stream at the
model's frame rate when the client gives its own (`?fps=`, see `window_stride`), else it takes every frame.

Control messages (JSON text):
    {"type": "ping", "id": "a"}                 -> {"type": "pong", "id": ..., "ts": ...} (id: string, number, null)
    {"type": "reset", "baseline": false}        -> clears the window, smoothing and tracker (and the baseline)
    {"type": "calibrate", "seconds": 3}         -> the mean prediction over the next N seconds becomes the person's
                                                   neutral baseline (`Calibration`); results then carry `relative`
    {"type": "auth", "api_key": "..."}          -> only as the first message, when the key is not in the URL
A face missing for a whole window of frames clears the window (the next face may be another person).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from pkdot_contract.preprocessing.face import FaceBox
from pkdot_contract.preprocessing.media import MediaError, decode_image, image_size_from_header
from service.core.config import Settings
from service.core.errors import (
    WS_INTERNAL_ERROR,
    WS_MESSAGE_TOO_BIG,
    WS_UNSUPPORTED_DATA,
    BadInput,
    InferenceFailed,
    InvalidField,
    ServiceError,
    TooLarge,
    as_service_error,
    close_reason,
)
from service.core.logging import stream_id as stream_id_var
from service.core.metrics import Metrics
from service.core.threads import run_blocking
from service.faces.tracker import FaceTracker
from service.inference.predictor import GraphError, Predictor
from service.streams.calibration import Calibration
from service.streams.slot import Frame, FrameSlot

log = logging.getLogger(__name__)

CONTROL_TYPES = ("ping", "reset", "calibrate", "auth")


def _echoable(value: object) -> bool:
    """A ping id the pong can carry back: null, a bool, a finite number (an integer within 64 bits) or a short
    string."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= 128


@dataclass
class Prepared:
    box: FaceBox | None
    tracked: bool
    model_input: np.ndarray | None  # (3, S, S)
    item: np.ndarray | None = None  # inline inference: this frame's window item ...
    outputs: dict[str, np.ndarray] | None = None  # ... and the model's outputs over the window ending with it


def window_stride(fps: float | None, frame_rate: float | None) -> int:
    """How many frames of a stream sent at `fps` make one step of a model trained on windows sampled at
    `frame_rate` (at least 1; 1 when either is unknown: every frame joins the window)."""
    if not fps or not frame_rate:
        return 1
    return max(int(round(fps / frame_rate)), 1)


class StreamSession:
    """One WebSocket stream of one model. `pool` runs the blocking per-frame work (decode, face, crop)."""

    def __init__(self, websocket: WebSocket, predictor: Predictor, tracker: FaceTracker, settings: Settings,
                 metrics: Metrics, pool: Executor, fps: float | None = None) -> None:
        self.ws, self.predictor, self.tracker = websocket, predictor, tracker
        self.settings, self.metrics, self.pool = settings, metrics, pool
        self.id = uuid.uuid4().hex[:12]
        self.task = predictor.task
        self.window: deque[np.ndarray] = deque(maxlen=predictor.window)  # per-frame items, oldest first
        self.stride = window_stride(fps, predictor.model.manifest.preprocessing.frame_rate)
        self._kept_seq = 0  # the frame the window took last
        self.recent: deque[dict] = deque(maxlen=predictor.window)  # per-frame predictions (fields), for smoothing
        self.baseline: dict | None = None
        self.calibration: Calibration | None = None
        self.missing = 0  # consecutive frames without a face
        mode = settings.stream_inference  # inline: the model runs in the frame's own thread (auto: on CPU)
        self.inline = mode == "inline" or (mode == "auto" and not predictor.model.on_gpu)
        self._generation = 0  # bumped by every reset: a frame that began before one does not feed the window
        self._slot = FrameSlot()  # the one waiting frame: newest wins
        self._stop = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self.finished = asyncio.Event()
        self.closed = False
        self.close_code: int | None = None
        self.close_by = ""
        self.started = time.monotonic()
        self.received = self.processed = self.dropped = self.errors = self.faces = 0
        self.latency_ms_sum = 0.0

    @property
    def frame_waiting(self) -> bool:
        """A frame waits in the slot for the processor (the stream is behind by one frame)."""
        return self._slot.waiting

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        token = stream_id_var.set(self.id)
        try:
            tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._process()),
                     asyncio.create_task(self._stop.wait())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.wait(tasks)  # not gather: its CancelledError would hide the server's own cancel
            for t in tasks:
                exc = None if t.cancelled() else t.exception()
                if exc is not None and not isinstance(exc, WebSocketDisconnect):
                    log.error("stream task failed", exc_info=exc)
                    await self.close(WS_INTERNAL_ERROR, "internal error")
        finally:
            self.finished.set()
            self.log_summary()
            stream_id_var.reset(token)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed, self.close_code, self.close_by = True, code, "server"
        self._stop.set()
        try:
            async with asyncio.timeout(1.0):
                async with self._send_lock:
                    await self.ws.close(code, close_reason(reason))
        except Exception:  # the client is gone already
            pass

    def _client_closed(self, code: int | None) -> None:
        if not self.closed:
            self.closed, self.close_code, self.close_by = True, code, "client"
        self._stop.set()

    def log_summary(self) -> None:
        log.info("stream closed", extra={
            "event": "stream_summary", "stream_id": self.id, "task": self.task, "model": self.predictor.model.name,
            "duration_s": round(time.monotonic() - self.started, 3), "received": self.received,
            "processed": self.processed, "dropped": self.dropped, "errors": self.errors, "faces": self.faces,
            "detections": self.tracker.detections, "tracked": self.tracker.tracked, "window_stride": self.stride,
            "mean_latency_ms": round(self.latency_ms_sum / self.processed, 2) if self.processed else None,
            "close_code": self.close_code, "closed_by": self.close_by or "server",
        })

    async def send(self, message: dict) -> None:
        if self.closed:
            return
        try:
            async with self._send_lock:
                await self.ws.send_text(orjson.dumps(message).decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._client_closed(None)

    async def send_error(self, exc: ServiceError, seq: int | None = None) -> None:
        self.errors += 1
        self.metrics.child(self.metrics.frames, self.task, "error").inc()
        message = {"type": "error", "error": {"code": exc.status, "message": exc.message}}
        if seq is not None:
            message["seq"] = seq
        await self.send(message)

    # -- receiving ---------------------------------------------------------------------------------------------------

    async def _receive(self) -> None:
        limits = self.settings
        while not self.closed:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self._client_closed(message.get("code"))
                return
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                seq = self.received
                self.received += 1
                if len(data) > limits.max_frame_bytes:
                    await self.close(WS_MESSAGE_TOO_BIG, f"frame {seq} has {len(data)} bytes; the limit is "
                                                         f"{limits.max_frame_bytes}")
                    return
                if self._slot.put(Frame(seq, time.time(), time.perf_counter(), data)):  # the waiting one is dropped
                    self.dropped += 1
                    self.metrics.child(self.metrics.dropped_frames, self.task).inc()
                    self.metrics.child(self.metrics.frames, self.task, "dropped").inc()
            elif text is not None:
                if len(text.encode()) > limits.max_control_bytes:
                    await self.close(WS_MESSAGE_TOO_BIG, f"control message over {limits.max_control_bytes} bytes")
                    return
                await self._control(text)

    async def _control(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):  # malformed, or nested too deeply to parse
            msg = None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in CONTROL_TYPES:
            await self.close(WS_UNSUPPORTED_DATA, "text messages are JSON control messages with type ping, reset or "
                                                  "calibrate; send frames as binary messages")
            return
        if kind == "ping":
            ping_id = msg.get("id")
            if not _echoable(ping_id):
                await self.send_error(InvalidField("ping: id must be a string (at most 128 characters), a finite "
                                                   "number (an integer within 64 bits) or null"))
                return
            await self.send({"type": "pong", "id": ping_id, "ts": time.time()})
        elif kind == "reset":
            self.reset(baseline=bool(msg.get("baseline", False)))
            await self.send({"type": "reset", "baseline": self.baseline is not None})
        elif kind == "calibrate":
            seconds = msg.get("seconds", self.settings.default_calibration_s)
            limit = self.settings.max_calibration_s
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= limit:
                await self.send_error(InvalidField(f"calibrate: seconds must be a number in (0, {limit:g}]"))
                return
            self.calibration = Calibration(time.monotonic() + float(seconds), float(seconds))
            await self.send({"type": "calibrating", "seconds": float(seconds)})
        else:  # a second auth message: already authenticated
            await self.send({"type": "auth", "ok": True})

    def reset(self, baseline: bool = False) -> None:
        self._generation += 1
        self.window.clear()
        self.recent.clear()
        self.tracker.reset()
        self.missing = 0
        if baseline:
            self.baseline = None
            self.calibration = None

    # -- processing --------------------------------------------------------------------------------------------------

    async def _process(self) -> None:
        while not self.closed:
            await self._process_frame(await self._slot.take())

    def _prepare(self, data: bytes, timings: dict[str, float], items: list[np.ndarray] | None = None) -> Prepared:
        """Decode, find the face, crop and normalise (blocking; runs in the CPU pool); with `items` (the window so
        far: inline inference) also run the model on the frame."""
        metrics, s = self.metrics, self.settings
        crop = self.predictor.crop
        # half-size decoding once the face is known to be large enough for the crop at half the resolution
        scale = self.tracker.next_scale(crop.size / (1.0 + 2.0 * crop.margin)) if s.stream_reduced_decode else 1
        with metrics.timer("decode", timings):
            size = image_size_from_header(data)
            if size is not None and size[0] * size[1] > s.max_image_pixels:
                raise TooLarge(f"the frame is {size[0]}x{size[1]} pixels; the limit is {s.max_image_pixels}")
            rgb = decode_image(data, s.max_image_pixels, reduce=scale)
        box, tracked = self.tracker(rgb, timings, scale)
        for stage in ("track", "detect"):
            if stage in timings:
                metrics.observe(stage, timings[stage] / 1000.0)
        if box is None:
            return Prepared(None, False, None)
        with metrics.timer("preprocess", timings):
            x = self.predictor.preprocess(rgb, box)  # (3, S, S)
        box = box.scaled(scale) if scale != 1 else box  # in full-frame pixels
        if items is None:
            return Prepared(box, tracked, x)
        try:
            with metrics.timer("inference", timings):
                item, outputs = self.predictor.step_blocking(x, items)
        except GraphError as exc:  # ONNX Runtime (or Triton) failed on this frame: a 503 for it, the stream goes on
            model = self.predictor.model.name
            metrics.inference_errors.labels(model, exc.graph).inc()
            log.error("inference failed", extra={"model": model, "graph": exc.graph,
                                                 "error": f"{type(exc.cause).__name__}: {exc.cause}"})
            raise InferenceFailed(f"inference failed in model {model} (graph {exc.graph}); try again") from None
        return Prepared(box, tracked, x, item, outputs)

    async def _process_frame(self, frame: Frame) -> None:
        seq, arrival = frame.seq, frame.arrival
        timings: dict[str, float] = {"wait": (time.perf_counter() - arrival) * 1000.0}
        inline = self.inline
        generation = self._generation
        try:
            prepared = await run_blocking(self.pool, self._prepare, frame.data, timings,
                                          list(self.window) if inline else None)
        except (ServiceError, MediaError) as exc:
            error = as_service_error(exc)
            if isinstance(error, TooLarge):  # an oversized image is refused like a bad one: the stream goes on
                error = BadInput(error.message)
            await self.send_error(error, seq)
            return
        prediction = smoothed = outputs = None
        try:
            if prepared.box is not None:
                self.missing = 0
                self.faces += 1
                if prepared.outputs is not None and generation == self._generation:  # inline: the model ran
                    item, outputs = prepared.item, prepared.outputs
                elif prepared.outputs is not None:  # a reset came while the frame was away: a window of it alone
                    item = prepared.item
                    outputs = await self.predictor.predict_window([item])
                else:
                    t0 = time.perf_counter()
                    item = (await self.predictor.encode(prepared.model_input[None]))[0]
                    outputs = await self.predictor.predict_window([*self.window, item])
                    timings["inference"] = (time.perf_counter() - t0) * 1000.0
                self._keep(item, seq)
            else:
                self.missing += 1
                if self.missing >= self.predictor.window:
                    self.reset()
            with self.metrics.timer("postprocess", timings):  # observed once per frame: prediction and smoothing
                if outputs is not None:
                    prediction = self.predictor.fields(outputs)
                    self.recent.append(prediction)
                smoothed = self.predictor.smooth(list(self.recent))
        except ServiceError as exc:  # inference failed or the server is busy: tell the client, go on
            await self.send_error(exc, seq)
            return
        await self._calibrate(prediction)
        relative = self.predictor.relative(smoothed, self.baseline) if smoothed and self.baseline else None
        face = None
        if prepared.box is not None:
            b = prepared.box
            face = {"box": [max(round(v, 1), 0.0) for v in b.as_list()], "score": min(max(b.score, 0.0), 1.0),
                    "tracked": prepared.tracked}
        total = (time.perf_counter() - arrival) * 1000.0
        timings["total"] = total
        self.metrics.observe("total", total / 1000.0)
        # the fields of service.core.schemas.StreamResult, built as plain Python (once per frame)
        await self.send({"type": "result", "seq": seq, "ts": frame.ts, "face_detected": face is not None, "face": face,
                         "prediction": prediction, "smoothed": smoothed, "relative": relative,
                         "dropped": self.dropped, "timings_ms": {k: round(v, 3) for k, v in timings.items()}})
        self.processed += 1
        self.latency_ms_sum += total
        self.metrics.child(self.metrics.frames, self.task, "processed").inc()

    def _keep(self, item: np.ndarray, seq: int) -> None:
        """The window samples the stream at the model's frame rate: a frame joins it when it was sent at least
        `stride` frames after the last one that did (the first always; counted in frames sent, so frames dropped
        or without a face do not stretch the window). Every frame is still answered, over the window so far followed
        by that frame."""
        if not self.window or seq - self._kept_seq >= self.stride:
            self.window.append(item)
            self._kept_seq = seq

    async def _calibrate(self, prediction: dict | None) -> None:
        c = self.calibration
        if c is None or not c.observe(prediction, time.monotonic()):
            return
        self.calibration = None
        if not c.predictions:
            await self.send_error(InvalidField(f"calibration saw no face in {c.seconds:g} s; the baseline is "
                                               f"{'unchanged' if self.baseline else 'not set'}"))
            return
        self.baseline = self.predictor.smooth(c.predictions)
        await self.send({"type": "calibrated", "frames": len(c.predictions), "seconds": c.seconds,
                         "baseline": self.baseline})
