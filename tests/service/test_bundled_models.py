"""The service on the bundled models in models/ (skipped, with the reason, until they exist)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import biovid_csv, wav_bytes

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = pytest.mark.skipif(not any(MODELS.glob("*/manifest.json")),
                                reason=f"no bundled model folder under {MODELS} yet")


@pytest.fixture(scope="module")
def bundled() -> Iterator:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import make_settings

    with TestClient(create_app(make_settings(MODELS))) as c:
        yield c


def test_every_bundled_model_answers(bundled, face_jpeg: bytes) -> None:
    ready = bundled.get("/readyz")
    assert ready.status_code == 200, ready.text
    models = ready.json()["models"]
    signals = {"pain": ("s_bio.csv", biovid_csv()), "affect": ("voice.wav", wav_bytes())}
    for m in models:
        files = [("file", ("face.jpg", face_jpeg, "image/jpeg"))]
        if m["role"] == "student":
            r = bundled.post(f"/predict/{m['task']}", params={"model": m["name"]}, files=files)
        else:
            name, data = signals[m["task"]]
            r = bundled.post(f"/predict/teacher/{m['task']}", files=[*files, ("signal", (name, data, "text/plain"))])
        assert r.status_code == 200, (m["name"], r.text)
        assert r.json()["face_detected"]
    for task in {m["task"] for m in models if m["role"] == "student"}:
        with bundled.websocket_connect(f"/ws/stream?task={task}") as ws:
            ws.send_bytes(face_jpeg)
            assert ws.receive_json()["prediction"] is not None
