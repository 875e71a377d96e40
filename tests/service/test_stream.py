"""WebSocket streaming through Starlette's TestClient: results, smoothing, tracking, control messages,
calibration, backpressure, and the per-session summary log line."""

from __future__ import annotations

import json
import logging
import re
import time

import numpy as np
import pytest

from service.core.schemas import StreamResult
from tests.service.conftest import FRAME_RATE, T, encode_jpeg, shifted


@pytest.fixture(scope="module")
def frames(face_rgb: np.ndarray) -> list[bytes]:
    return [encode_jpeg(shifted(face_rgb, 2 * i)) for i in range(12)]


def _results_until(ws, predicate) -> list[dict]:
    out = []
    while True:
        msg = ws.receive_json()
        out.append(msg)
        if predicate(msg):
            return out


def test_one_result_per_frame_with_smoothing_and_tracking(client, frames: list[bytes]) -> None:
    results = []
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        for f in frames[: T + 3]:
            ws.send_bytes(f)
            results.append(ws.receive_json())
    assert [r["seq"] for r in results] == list(range(T + 3))
    assert all(r["type"] == "result" and r["face_detected"] and r["dropped"] == 0 for r in results)
    for r in results:  # the message built per frame has the documented schema, value ranges included
        assert StreamResult.model_validate(r).model_dump(mode="json") == r
    probs = [r["prediction"]["probabilities"] for r in results]
    for i, r in enumerate(results):  # smoothed = mean of the last T per-frame predictions
        expected = np.mean(probs[max(0, i - T + 1) : i + 1], axis=0)
        np.testing.assert_allclose(r["smoothed"]["probabilities"], expected, atol=1e-9)
        assert r["ts"] == pytest.approx(time.time(), abs=60) and r["timings_ms"]["total"] > 0
    # detect-then-track (detect_every=10 by default): the first frame is detected, the next ones are tracked
    assert [r["face"]["tracked"] for r in results] == [False] + [True] * (T + 2)
    # the tracked box follows the face: it moves 2 px per frame
    xs = [r["face"]["box"][0] for r in results[:5]]
    assert np.diff(xs) == pytest.approx([2, 2, 2, 2], abs=1.5)


def _last_prediction(client, url: str, frames: list[bytes]) -> tuple[list[float], list[dict]]:
    with client.websocket_connect(url) as ws:
        results = []
        for f in frames:
            ws.send_bytes(f)
            results.append(ws.receive_json())
    assert all(r["type"] == "result" and r["face_detected"] for r in results), results
    return results[-1]["prediction"]["probabilities"], results


def test_the_window_samples_the_stream_at_the_models_frame_rate(client, face_rgb: np.ndarray) -> None:
    # frames that differ in colour and light, so that which of them the window holds changes the prediction
    grey = np.repeat(face_rgb.mean(2, keepdims=True), 3, axis=2)
    looks = [face_rgb, face_rgb[..., ::-1], grey * 0.6, face_rgb[..., [1, 2, 0]], np.clip(grey * 1.3, 0, 255)]
    frames = [encode_jpeg(np.ascontiguousarray(x).astype(np.uint8)) for x in looks]
    stride = 2
    fps = stride * FRAME_RATE  # sent twice as fast as the model's window is sampled: every other frame joins it
    sampled, results = _last_prediction(client, f"/ws/stream?task=pain&fps={fps}", frames)
    assert sampled == pytest.approx(_last_prediction(client, "/ws/stream?task=pain", frames[::stride])[0], abs=1e-4)
    # the frames in between are answered too, over the window so far followed by themselves
    between = results[3]["prediction"]["probabilities"]
    assert between == pytest.approx(_last_prediction(client, "/ws/stream?task=pain", frames[0:4:2] + frames[3:4])[0],
                                    abs=1e-4)
    every, _ = _last_prediction(client, "/ws/stream?task=pain", frames)  # without fps: every frame joins the window
    assert np.abs(np.subtract(every, sampled)).max() > 1e-3, (every, sampled)  # 10x the tolerance above
    at_rate, _ = _last_prediction(client, f"/ws/stream?task=pain&fps={FRAME_RATE}", frames)  # stride 1
    assert at_rate == pytest.approx(every, abs=1e-6)


def test_first_frame_of_a_stream_equals_rest(client, face_jpeg: bytes) -> None:
    rest = client.post("/predict/affect", files=[("file", ("f.jpg", face_jpeg, "image/jpeg"))]).json()
    with client.websocket_connect("/ws/stream?task=affect") as ws:
        ws.send_bytes(face_jpeg)
        first = ws.receive_json()
        ws.send_bytes(face_jpeg)
        ws.receive_json()
        ws.send_text('{"type": "reset"}')
        assert ws.receive_json() == {"type": "reset", "baseline": False}
        ws.send_bytes(face_jpeg)
        after_reset = ws.receive_json()
    for r in (first, after_reset):
        assert r["prediction"] == pytest.approx(rest["prediction"], abs=1e-6)
    assert after_reset["seq"] == 2


def test_frames_without_a_face(client, noise_jpeg: bytes, face_jpeg: bytes) -> None:
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        ws.send_bytes(face_jpeg)
        ws.receive_json()
        ws.send_bytes(noise_jpeg)
        r = ws.receive_json()
    assert r["face_detected"] is False and r["face"] is None and r["prediction"] is None
    assert r["smoothed"] is not None  # the last window still stands until a whole window passes without a face


def test_calibration_reports_relative_predictions(client, frames: list[bytes]) -> None:
    with client.websocket_connect("/ws/stream?task=affect") as ws:
        ws.send_text('{"type": "calibrate", "seconds": 0.3}')
        assert ws.receive_json() == {"type": "calibrating", "seconds": 0.3}
        seen: list[dict] = []
        start = time.monotonic()
        calibrated = None
        i = 0
        while calibrated is None:
            assert time.monotonic() - start < 10
            ws.send_bytes(frames[i % len(frames)])
            i += 1
            for msg in _results_until(ws, lambda m: m["type"] in ("result", "calibrated")):
                if msg["type"] == "calibrated":
                    calibrated = msg
                else:
                    seen.append(msg)
            time.sleep(0.03)
        assert seen and all(r["relative"] is None for r in seen)  # no baseline yet
        baseline = calibrated["baseline"]
        during = [r["prediction"] for r in seen]
        assert baseline["valence"] == pytest.approx(np.mean([p["valence"] for p in during]), abs=1e-6)
        assert calibrated["frames"] == len(during)
        ws.send_bytes(frames[0])
        r = _results_until(ws, lambda m: m["type"] == "result")[-1]
    assert r["relative"]["valence"] == pytest.approx(r["smoothed"]["valence"] - baseline["valence"], abs=1e-6)
    assert r["relative"]["arousal"] == pytest.approx(r["smoothed"]["arousal"] - baseline["arousal"], abs=1e-6)


def test_calibration_without_a_face_is_an_error(client, noise_jpeg: bytes) -> None:
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        ws.send_text('{"type": "calibrate", "seconds": 0.05}')
        ws.receive_json()
        time.sleep(0.1)
        ws.send_bytes(noise_jpeg)
        msgs = _results_until(ws, lambda m: m["type"] == "error")
    assert "no face" in msgs[-1]["error"]["message"]


def test_fast_sender_gets_drops_counted_and_bounded_memory(client, frames: list[bytes]) -> None:
    n = 40
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        for i in range(n):
            ws.send_bytes(frames[i % len(frames)])
        ws.send_text('{"type": "ping", "id": "end"}')
        msgs = _results_until(ws, lambda m: m.get("seq") == n - 1)
        results = [m for m in msgs if m["type"] == "result"]
        session = next(iter(client.app.state.streams._open))
        pending = session._slot.waiting
    assert not pending  # one waiting frame at most, and none once the newest is answered
    dropped = results[-1]["dropped"]
    assert dropped > 0 and len(results) + dropped == n  # every frame answered or counted as dropped
    assert [r["seq"] for r in results] == sorted(r["seq"] for r in results)
    assert results[-1]["seq"] == n - 1  # the newest frame always wins
    assert any(m["type"] == "pong" and m["id"] == "end" for m in msgs)
    metrics = client.get("/metrics").text
    assert 'pkdot_dropped_frames_total{task="pain"}' in metrics


def test_summary_log_line_without_frame_bytes(client, face_jpeg: bytes, caplog: pytest.LogCaptureFixture) -> None:
    from service.core.logging import JsonFormatter

    with caplog.at_level(logging.INFO):
        with client.websocket_connect("/ws/stream?task=pain") as ws:
            for _ in range(3):
                ws.send_bytes(face_jpeg)
                ws.receive_json()
        deadline = time.monotonic() + 5
        while not any(getattr(r, "event", None) == "stream_summary" for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    summary = next(r for r in caplog.records if getattr(r, "event", None) == "stream_summary")
    line = json.loads(JsonFormatter().format(summary))
    assert line["received"] == 3 and line["processed"] == 3 and line["dropped"] == 0 and line["faces"] == 3
    assert line["task"] == "pain" and len(line["stream_id"]) == 12 and line["closed_by"] == "client"
    assert line["window_stride"] == 1  # no ?fps=: every frame joins the window
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert face_jpeg[100:140].hex() not in text and repr(face_jpeg[100:140])[2:-1] not in text


def _stage_count(client, stage: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^pkdot_stage_seconds_count{{stage="{stage}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_postprocess_is_observed_once_per_frame(client, frames: list[bytes], noise_jpeg: bytes) -> None:
    before = _stage_count(client, "postprocess")
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        for data in (frames[0], noise_jpeg, frames[1]):  # a face, none, a face
            ws.send_bytes(data)
            assert ws.receive_json()["type"] == "result"
    assert _stage_count(client, "postprocess") - before == 3
    assert _stage_count(client, "total") >= 3


def test_half_size_decoding_keeps_the_predictions(client, settings_factory, frames: list[bytes]) -> None:
    """Streams decode at half size once the face is large enough (the default); boxes stay in full-frame pixels and
    the predictions stay those of full-size decoding, up to resampling."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    def stream(c) -> list[dict]:
        out = []
        with c.websocket_connect("/ws/stream?task=pain") as ws:
            for f in frames[:12]:
                ws.send_bytes(f)
                out.append(ws.receive_json())
        return out

    half = stream(client)
    with TestClient(create_app(settings_factory(stream_reduced_decode=False))) as full_client:
        full = stream(full_client)
    assert all(r["face_detected"] for r in half + full)
    for h, f in zip(half, full, strict=True):
        np.testing.assert_allclose(h["face"]["box"], f["face"]["box"], atol=4.0)
        np.testing.assert_allclose(h["prediction"]["probabilities"], f["prediction"]["probabilities"], atol=0.05)
    assert half[0]["prediction"] == full[0]["prediction"]  # the first frame, before any face is known, is full size
    n = client.app.state.ctx.settings.detect_every  # full size until the second detection, half size from there
    assert n < len(half)
    assert [h["face"]["box"] for h in half[:n]] == [f["face"]["box"] for f in full[:n]]
    assert all(h["face"]["box"] != f["face"]["box"] for h, f in zip(half[n:], full[n:], strict=True))


def test_inline_inference_answers_as_the_batchers_do(client, settings_factory, frames: list[bytes]) -> None:
    """On CPU streams run the encoder and head in the frame's own thread (`stream_inference = "auto"`): the same
    answers as through the shared batchers."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    def stream(c, task: str) -> list[dict]:
        out = []
        with c.websocket_connect(f"/ws/stream?task={task}") as ws:
            for f in frames[:8]:
                ws.send_bytes(f)
                out.append(ws.receive_json())
        return out

    def numbers(p: dict) -> list[float]:
        return [*p.get("probabilities", []), *(p[k] for k in ("expected_level", "valence", "arousal") if k in p)]

    with TestClient(create_app(settings_factory(stream_inference="batched"))) as batched_client:
        for task in ("pain", "affect"):
            inline, batched = stream(client, task), stream(batched_client, task)
            for a, b in zip(inline, batched, strict=True):
                assert a["face"] == b["face"]
                for key in ("prediction", "smoothed"):
                    np.testing.assert_allclose(numbers(a[key]), numbers(b[key]), atol=1e-5)
                assert a["timings_ms"]["inference"] > 0
