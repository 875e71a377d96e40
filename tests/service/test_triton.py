"""The Triton backend against a real Triton Inference Server (tests/service/tritonserve.py: NVIDIA's tritonserver
from the nvidia-pytriton wheel, serving the bundled pain student's graphs with the tensors its config.pbtxt names).

The service keeps detection, cropping, tracking and smoothing and sends only the graphs' tensors over gRPC: its
answers equal the ONNX Runtime backend's on the same frames, and a server whose tensors differ from the manifest
is refused at start-up with the tensor named.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.errors import ModelLoadError
from service.inference.models import load_model
from tests.service.conftest import encode_jpeg, make_settings, shifted
from tests.service.raycluster import free_port

pytest.importorskip("tritonclient.grpc", reason="the Triton backend needs the cluster extra")
pytest.importorskip("pytriton", reason="the Triton server for this test comes with the dev extra (nvidia-pytriton)")

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
MODEL = "pain-student"
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _start_triton(grpc: int, http: int, metrics: int, wait_s: float) -> tuple[subprocess.Popen | None, str]:
    """The server process once it printed "ready" (None if it did not within wait_s) and what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.service.tritonserve", str(MODELS / MODEL), str(grpc),
                             str(http), str(metrics), "--bad"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # readline blocks: a thread reads, so the deadline holds when the server prints nothing
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if line.strip() == "ready":
            return proc, "".join(seen)
    proc.kill()
    proc.wait()
    return None, "".join(seen[-60:])


@pytest.fixture(scope="module")
def triton_url() -> Iterator[str]:
    if not (MODELS / MODEL / "encoder" / "config.pbtxt").is_file():
        pytest.skip(f"the bundled {MODEL} folder is missing")
    attempts = []
    for _ in range(2):  # a second start on fresh ports if the first did not come up (a loaded machine)
        grpc, http, metrics = free_port(), free_port(), free_port()
        proc, out = _start_triton(grpc, http, metrics, wait_s=150)
        if proc is not None:
            break
        attempts.append(out)
    else:
        pytest.fail("the Triton server did not start (twice):\n" + "\n-- second start --\n".join(attempts))
    try:
        yield f"127.0.0.1:{grpc}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _settings(**overrides):
    return make_settings(MODELS, models=[MODEL], teacher="off", **overrides)


def test_the_contract_with_triton_is_the_manifest(triton_url: str) -> None:
    model = load_model(MODELS / MODEL, _settings(backend="triton", triton_url=triton_url))
    assert {g: s.provider for g, s in model.graphs.items()} == {"encoder": "Triton:CPU", "head": "Triton:CPU"}
    with pytest.raises(ModelLoadError, match=r"input 'frames' is FP32 \[3, 64, 65\]; the manifest declares FP32 "
                                             r"\[3, 64, 64\]"):
        load_model(MODELS / MODEL, _settings(backend="triton", triton_url=triton_url,
                                             triton_model_name="{graph}-bad"))
    with pytest.raises(ModelLoadError, match="cannot reach the Triton server"):
        load_model(MODELS / MODEL, _settings(backend="triton", triton_url=f"127.0.0.1:{free_port()}",
                                             triton_timeout_s=2.0))


def test_triton_backend_answers_equal_onnxruntime(triton_url: str, face_rgb: np.ndarray, face_jpeg: bytes) -> None:
    import cv2

    small = cv2.resize(face_rgb, (320, 320), interpolation=cv2.INTER_AREA)
    frames = [encode_jpeg(shifted(small, (i * 3) % 13)) for i in range(10)]
    answers = {}
    for backend in ("onnxruntime", "triton"):
        with TestClient(create_app(_settings(backend=backend, triton_url=triton_url))) as c:
            ready = c.get("/readyz").json()
            assert ready["models"][0]["provider"] == ("CPU" if backend == "onnxruntime" else "Triton:CPU")
            rest = c.post("/predict/pain", files={"file": ("face.jpg", face_jpeg, "image/jpeg")}).json()
            with c.websocket_connect("/ws/stream?task=pain") as ws:
                stream = []
                for data in frames:
                    ws.send_bytes(data)
                    stream.append(ws.receive_json())
        answers[backend] = (rest, stream)
    (rest_o, stream_o), (rest_t, stream_t) = answers["onnxruntime"], answers["triton"]
    assert rest_o["face"] == rest_t["face"] and rest_t["prediction"] is not None
    np.testing.assert_allclose(rest_t["prediction"]["probabilities"], rest_o["prediction"]["probabilities"],
                               rtol=1e-4, atol=1e-6)
    assert sum(m["face_detected"] for m in stream_t) >= len(frames) - 1
    for o, t in zip(stream_o, stream_t, strict=True):
        assert o["seq"] == t["seq"] and o["face"] == t["face"]
        if o["prediction"] is not None:
            np.testing.assert_allclose(t["prediction"]["probabilities"], o["prediction"]["probabilities"],
                                       rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(t["smoothed"]["probabilities"], o["smoothed"]["probabilities"],
                                       rtol=1e-4, atol=1e-6)
