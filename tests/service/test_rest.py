"""REST prediction on a real face photo, a clip and a video, through the real app (ONNX Runtime, MediaPipe)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.conftest import PAIN_LABELS, T, encode_jpeg, shifted


def _jpeg(data: bytes, name: str = "face.jpg") -> tuple:
    return ("file", (name, data, "image/jpeg"))


def _check_pain(prediction: dict) -> None:
    p = prediction["probabilities"]
    assert len(p) == 5 and all(0.0 <= x <= 1.0 for x in p)
    assert sum(p) == pytest.approx(1.0, abs=1e-6)
    assert prediction["pain_level"] == int(np.argmax(p))
    assert prediction["label"] == PAIN_LABELS[prediction["pain_level"]]
    assert prediction["expected_level"] == pytest.approx(sum(i * x for i, x in enumerate(p)), abs=1e-6)


def test_pain_on_one_image(client, face_jpeg: bytes) -> None:
    r = client.post("/predict/pain", files=[_jpeg(face_jpeg)])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "pain-student", "version": "0.0.1-test"}
    assert body["task"] == "pain" and body["face_detected"] is True
    x, y, w, h = body["face"]["box"]
    assert 150 < x + w / 2 < 300 and 80 < y + h / 2 < 200 and body["face"]["score"] > 0.8
    _check_pain(body["prediction"])
    assert body["frames_received"] == 1 and body["frames_used"] == 1
    assert {"decode", "detect", "preprocess", "inference", "total"} <= set(body["timings_ms"])
    assert r.headers["x-request-id"]


def test_affect_on_png(client, face_png: bytes) -> None:
    r = client.post("/predict/affect", files=[("file", ("face.png", face_png, "image/png"))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["face_detected"] and body["model"]["name"] == "affect-student"
    assert -1.0 <= body["prediction"]["valence"] <= 1.0 and -1.0 <= body["prediction"]["arousal"] <= 1.0


def test_same_image_same_answer_and_different_faces_differ(client, face_rgb, face_jpeg: bytes) -> None:
    a = client.post("/predict/pain", files=[_jpeg(face_jpeg)]).json()["prediction"]
    b = client.post("/predict/pain", files=[_jpeg(face_jpeg)]).json()["prediction"]
    assert a == b  # deterministic
    dark = encode_jpeg((face_rgb * 0.6).astype(np.uint8))
    c = client.post("/predict/pain", files=[_jpeg(dark)]).json()["prediction"]
    assert c["probabilities"] != a["probabilities"]  # the model sees the frame


def test_clip_uses_the_last_window_of_face_frames(client, face_rgb, noise_jpeg: bytes) -> None:
    frames = [encode_jpeg(shifted(face_rgb, 3 * i)) for i in range(T + 2)]
    files = [_jpeg(f, f"{i}.jpg") for i, f in enumerate(frames)] + [_jpeg(noise_jpeg, "noise.jpg")]
    body = client.post("/predict/pain", files=files).json()
    assert body["frames_received"] == T + 3
    assert body["frames_used"] == T  # the window holds T face frames; the noise frame has no face
    _check_pain(body["prediction"])
    # the reported face is the last face frame's: shifted right by 3 * (T + 1) pixels from the first
    first = client.post("/predict/pain", files=[_jpeg(frames[0])]).json()["face"]["box"]
    assert body["face"]["box"][0] - first[0] == pytest.approx(3 * (T + 1), abs=4)


def test_short_video(client, face_mp4: bytes) -> None:
    r = client.post("/predict/affect", files=[("file", ("clip.mp4", face_mp4, "video/mp4"))])
    assert r.status_code == 200, r.text
    body = r.json()
    # 1 s at 25 fps resampled to the model's 5 fps: 5 frames, the last T of them in the window
    assert body["frames_received"] == 5
    assert body["frames_used"] == T and body["face_detected"]
    assert -1 <= body["prediction"]["valence"] <= 1


def test_no_face_is_a_result(client, noise_jpeg: bytes) -> None:
    r = client.post("/predict/pain", files=[_jpeg(noise_jpeg)])
    assert r.status_code == 200
    body = r.json()
    assert body["face_detected"] is False and body["face"] is None and body["prediction"] is None
    assert body["frames_used"] == 0 and body["frames_received"] == 1


def test_named_model_and_one_graph_student(client, face_rgb) -> None:
    files = [_jpeg(encode_jpeg(shifted(face_rgb, i))) for i in range(2)]
    r = client.post("/predict/pain", params={"model": "pain-clip"}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["name"] == "pain-clip"
    _check_pain(r.json()["prediction"])


def test_operations_routes(client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["skipped"] == []
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"pain-student", "affect-student", "pain-clip", "pain-teacher", "affect-teacher"}
    assert all(m["provider"] == "CPU" for m in by_name.values())  # what the session really runs on
    assert by_name["pain-student"]["default"] and not by_name["pain-clip"]["default"]
    assert by_name["pain-student"]["providers"] == {"encoder": ["CPU"], "head": ["CPU"]}
    models = client.get("/v1/models").json()["models"]
    manifest = next(m for m in models if m["name"] == "pain-student")["manifest"]
    assert manifest["preprocessing"]["window"] == T and manifest["outputs"]["labels"] == PAIN_LABELS
    schema = client.get("/openapi.json").json()
    assert {"/predict/pain", "/predict/affect", "/predict/teacher/{task}", "/readyz"} <= set(schema["paths"])


def test_metrics_count_stages(client, face_jpeg: bytes) -> None:
    client.post("/predict/pain", files=[_jpeg(face_jpeg)])
    text = client.get("/metrics").text
    for stage in ("decode", "detect", "preprocess", "queue", "inference", "total"):
        assert f'pkdot_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'pkdot_requests_total{route="/predict/pain",status="200"}' in text
    assert "pkdot_batch_size_bucket" in text and "pkdot_active_streams" in text


def test_uploads_stay_in_memory(client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multi-megabyte upload is never spooled to a temporary file (privacy: nothing is written to disk)."""
    import tempfile

    def refuse(self) -> None:
        raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", refuse)
    big = encode_jpeg(np.random.default_rng(1).integers(0, 255, (1400, 1400, 3), dtype=np.uint8), quality=100)
    assert len(big) > 2_000_000
    r = client.post("/predict/pain", files=[_jpeg(big)])
    assert r.status_code == 200 and r.json()["face_detected"] is False


def test_cors_setting(model_root) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import make_settings

    settings = make_settings(model_root, cors_origins=["https://app.example"], teacher="off", warmup=False)
    with TestClient(create_app(settings)) as c:
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "X-API-Key"}
        r = c.options("/predict/pain", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(make_settings(model_root, teacher="off", warmup=False))) as c:  # off by default
        r = c.get("/healthz", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers
