"""Faults: clients that vanish mid-frame and mid-batch, tampered model folders, ONNX Runtime raising or answering
NaN during a batch, a GPU provider that is not there, and SIGTERM while streams and requests are in flight.

After every fault the server must be back where it was: no leaked asyncio tasks, streams, queued rows or threads,
memory flat, and the next request answered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from service.core.errors import ModelLoadError
from service.inference.registry import ModelRegistry
from tests.reliability.conftest import Figures, ProbedServer, ServeProcess, rss_mb
from tests.service.conftest import make_settings, shifted, write_mp4

# -- helpers -----------------------------------------------------------------------------------------------------------


def abort(s: socket.socket) -> None:
    """Close with a TCP reset: no close frame, no FIN handshake (a client that crashed or lost its network)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def ws_open(port: int, path: str) -> socket.socket:
    """A WebSocket handshake by hand, so that the test can then send half a frame."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    return s


def ws_binary_frame(data: bytes) -> bytes:
    """One masked binary frame (client to server), RFC 6455 section 5.2."""
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                            if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
    payload = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
    return head + mask + payload


def multipart(data: bytes, name: str = "face.jpg") -> tuple[bytes, str]:
    boundary = "reliability"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def http_request(path: str, data: bytes) -> bytes:
    body, ctype = multipart(data)
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


@contextlib.contextmanager
def patched_run(server: ProbedServer, model: str, graph: str, wrapper: Callable) -> Iterator[None]:
    """Replace the ONNX Runtime session's `run` of one graph with `wrapper(original, output_names, feed)`."""
    session = server.app.state.ctx.registry.models[model].graphs[graph].session
    original = session.run
    session.run = lambda names, feed, *a, **kw: wrapper(original, names, feed)
    try:
        yield
    finally:
        del session.run  # back to the class's method


def slow(seconds: float) -> Callable:
    def run(original: Callable, names: list, feed: dict) -> list:
        time.sleep(seconds)
        return original(names, feed)

    return run


def statuses_500(server: ProbedServer) -> float:
    text = server.app.state.metrics.render().decode()
    return sum(float(v) for v in re.findall(r'pkdot_requests_total\{route="[^"]*",status="5\d\d"\} (\S+)', text))


@pytest.fixture(scope="module")
def faulty(model_root: Path) -> Iterator[ProbedServer]:
    """A server of its own: these tests patch its sessions."""
    server = ProbedServer(make_settings(model_root, max_batch_delay_ms=5.0, max_batch_size=8, detector_workers=1,
                                        preprocess_threads=2, inference_threads=1, ort_intra_op_threads=1)).start()
    yield server
    server.stop()


# -- client disconnects ------------------------------------------------------------------------------------------------


def _disconnect_round(server: ProbedServer, jpeg: bytes) -> None:
    port = server.port
    # mid-frame: half of a binary frame, then the connection is reset
    s = ws_open(port, "/ws/stream?task=pain")
    frame = ws_binary_frame(jpeg)
    s.sendall(frame[: len(frame) // 2])
    abort(s)
    # mid-processing: a whole frame, reset before its result is sent
    s = ws_open(port, "/ws/stream?task=affect")
    s.sendall(ws_binary_frame(jpeg))
    time.sleep(0.05)
    abort(s)
    # mid-upload: half of a REST body, then reset
    request = http_request("/predict/pain", jpeg)
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(request[: len(request) // 2])
    time.sleep(0.05)
    abort(s)
    # mid-batch: several REST requests and streams waiting on a slow graph, all reset while their rows are queued
    with patched_run(server, "pain-student", "head", slow(0.3)):
        sockets = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(request)
            sockets.append(s)
        for _ in range(2):
            s = ws_open(port, "/ws/stream?task=pain")
            s.sendall(ws_binary_frame(jpeg) * 3)
            sockets.append(s)
        time.sleep(0.4)
        for s in sockets:
            abort(s)
        time.sleep(0.4)


def test_client_disconnects_leave_nothing_behind(faulty: ProbedServer, small_face_jpeg: bytes,
                                                 figures: Figures) -> None:
    with httpx.Client(base_url=faulty.http, timeout=60) as http:
        assert http.post("/predict/pain", files=[("file", ("f.jpg", small_face_jpeg, "image/jpeg"))]).is_success
    time.sleep(0.2)
    idle = faulty.census()
    errors_before = statuses_500(faulty)
    _disconnect_round(faulty, small_face_jpeg)  # warm-up: pools start their threads, first-use allocations
    idle["threads"] = faulty.settle(idle)["threads"]
    rss0 = rss_mb()
    rounds = int(os.environ.get("PKDOT_DISCONNECT_ROUNDS", "6"))
    for _ in range(rounds):
        _disconnect_round(faulty, small_face_jpeg)
    after = faulty.settle(idle)
    rss1 = rss_mb()
    leaks = {k: after[k] - idle[k] for k in ("tasks", "streams", "queued_rows", "active_streams_gauge")}
    assert all(v <= 0 for v in leaks.values()), f"leaked after disconnects: {leaks} (idle {idle}, now {after})"
    s = faulty.app.state.settings
    pools = 2 * s.preprocess_threads + s.inference_threads  # the pools start threads lazily, up to their size
    assert after["threads"] <= idle["threads"] + pools, (idle, after)  # nothing per connection
    assert rss1 - rss0 < 40, f"memory grew by {rss1 - rss0:.1f} MB over {rounds} rounds"
    assert statuses_500(faulty) == errors_before, "a client that went away was counted as a server error"
    with httpx.Client(base_url=faulty.http, timeout=60) as http:
        r = http.post("/predict/pain", files=[("file", ("f.jpg", small_face_jpeg, "image/jpeg"))])
    assert r.status_code == 200 and r.json()["face_detected"]
    per_round = 4 + 2 + 3  # WS mid-frame, WS mid-processing, REST mid-upload; 4 REST + 2 WS mid-batch -> 9
    figures.add("faults", fault="client disconnects mid-frame, mid-upload, mid-processing, mid-batch",
                tried=per_round * (rounds + 1), survived=True,
                detail=f"{rounds + 1} rounds; after: tasks {after['tasks'] - idle['tasks']:+d}, streams "
                       f"{after['streams']}, queued rows {after['queued_rows']}, threads "
                       f"{after['threads'] - idle['threads']:+d}, RSS {rss1 - rss0:+.1f} MB, 5xx 0")


# -- ONNX Runtime faults -------------------------------------------------------------------------------------------


def ort_raises(original: Callable, names: list, feed: dict) -> list:
    """A genuine ONNX Runtime error: the graph run on an input of the wrong rank."""
    bad = {k: np.zeros((1,), np.float32) for k in feed}
    return original(names, bad)


def nan_outputs(original: Callable, names: list, feed: dict) -> list:
    return [np.full_like(o, np.nan) for o in original(names, feed)]


async def _burst(base: str, jpeg: bytes, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        return await asyncio.gather(*(client.post("/predict/pain", files=[("file", ("f.jpg", jpeg, "image/jpeg"))])
                                      for _ in range(n)))


@pytest.mark.parametrize(("fault", "graph", "wrapper", "pattern"), [
    ("ONNX Runtime raises during a batch", "encoder", ort_raises,
     r"inference failed in model pain-student \(graph encoder\); try again"),
    ("the model answers NaN", "head", nan_outputs, r"non-finite probabilities output"),
], ids=["ort-raises", "nan-output"])
def test_inference_fault_gives_503_and_the_server_recovers(faulty: ProbedServer, small_face_jpeg: bytes,
                                                           figures: Figures, fault: str, graph: str,
                                                           wrapper: Callable, pattern: str) -> None:
    idle = faulty.census()
    with connect(f"{faulty.ws}/ws/stream?task=pain") as ws:
        with patched_run(faulty, "pain-student", graph, wrapper):
            responses = asyncio.run(_burst(faulty.http, small_face_jpeg, 6))
            ws.send(small_face_jpeg)
            error = json.loads(ws.recv(timeout=30))
        for r in responses:
            assert r.status_code == 503, r.text
            assert re.search(pattern, r.json()["error"]["message"]), r.text
        assert error["type"] == "error" and error["seq"] == 0 and error["error"]["code"] == 503
        assert re.search(pattern, error["error"]["message"])
        ws.send(small_face_jpeg)  # the same stream goes on once the graph is healthy again
        result = json.loads(ws.recv(timeout=30))
        assert result["type"] == "result" and result["seq"] == 1 and result["face_detected"]
    after = asyncio.run(_burst(faulty.http, small_face_jpeg, 6))
    assert all(r.status_code == 200 for r in after)
    assert httpx.get(f"{faulty.http}/readyz").status_code == 200
    metrics = httpx.get(f"{faulty.http}/metrics").text
    if wrapper is ort_raises:
        assert re.search(r'pkdot_inference_errors_total\{graph="encoder",model="pain-student"\} [1-9]', metrics)
    settled = faulty.settle(idle)
    assert settled["tasks"] <= idle["tasks"] and settled["queued_rows"] == 0
    figures.add("faults", fault=fault, tried=7, survived=True,
                detail=f"6 concurrent requests: 503 '{responses[0].json()['error']['message']}'; stream: error 503, "
                       "next frame answered; next 6 requests: 200")


# -- tampered model folders ------------------------------------------------------------------------------------------


def _edit_manifest(folder: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _point_outside(m: dict) -> None:
    outside = "../affect-student/encoder/1/model.onnx"
    m["files"][outside] = m["files"].pop("encoder/1/model.onnx")
    m["graphs"]["encoder"]["file"] = outside


TAMPERS = {  # name -> (what is done to a copy of pain-student, what the refusal must say)
    "a byte of a graph flipped": (lambda f: _flip_byte(f / "encoder/1/model.onnx"),
                                  r"encoder/1/model\.onnx does not match its sha256"),
    "a graph swapped for another model's": (
        lambda f: shutil.copy(f.parent / "affect-student/head/1/model.onnx", f / "head/1/model.onnx"),
        r"head/1/model\.onnx does not match its sha256"),
    "a graph deleted": (lambda f: (f / "head/1/model.onnx").unlink(),
                        r"head/1/model\.onnx is listed in the manifest but missing"),
    "the Triton config edited": (lambda f: (f / "encoder/config.pbtxt").write_text("max_batch_size: 1024\n"),
                                 r"encoder/config\.pbtxt does not match its sha256"),
    "the model card edited": (lambda f: (f / "MODEL_CARD.md").write_text("# trust me\n"),
                              r"MODEL_CARD\.md does not match its sha256"),
    "a hash in the manifest edited": (
        lambda f: _edit_manifest(f, lambda m: m["files"].update({"head/1/model.onnx": "0" * 64})),
        r"head/1/model\.onnx does not match its sha256"),
    "the manifest points outside the folder": (lambda f: _edit_manifest(f, _point_outside),
                                               r"'\.\./affect-student/encoder/1/model\.onnx' is not a path inside"),
    "the manifest is not JSON": (lambda f: (f / "manifest.json").write_text('{"schema_version": 1,'),
                                 r"manifest\.json: not valid JSON"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampered_model_folder_is_refused_with_the_file_named(students_root: Path, tmp_path: Path,
                                                              figures: Figures, tamper: str) -> None:
    for name in ("pain-student", "affect-student"):
        shutil.copytree(students_root / name, tmp_path / name)
    do, pattern = TAMPERS[tamper]
    do(tmp_path / "pain-student")
    settings = make_settings(tmp_path, warmup=False)
    with pytest.raises(ModelLoadError) as info:
        ModelRegistry(settings).load()
    message = str(info.value)
    assert "pain-student" in message and re.search(pattern, message), message
    skipping = ModelRegistry(make_settings(tmp_path, warmup=False, skip_broken_models=True))
    skipping.load()  # or left out, listed, and the other models served
    assert set(skipping.models) == {"affect-student"} and skipping.skipped[0][0].endswith("pain-student")
    figures.add("faults", fault=f"tampered model folder: {tamper}", tried=1, survived=True,
                detail=message.split(": ", 1)[-1][:140])


@pytest.mark.slow
def test_pkdot_serve_refuses_a_tampered_folder(students_root: Path, tmp_path: Path, figures: Figures) -> None:
    models = tmp_path / "models"
    for name in ("pain-student", "affect-student"):
        shutil.copytree(students_root / name, models / name)
    _flip_byte(models / "pain-student/encoder/1/model.onnx")
    server = ServeProcess(models, tmp_path / "run")
    try:
        code = server.proc.wait(timeout=120)
    finally:
        server.stop()
    log = server.log()
    assert code == 3, log[-2000:]
    assert "encoder/1/model.onnx does not match its sha256" in log and "pain-student" in log
    figures.add("faults", fault="pkdot serve on a tampered folder", tried=1, survived=True,
                detail="exit status 3; the log names pain-student/encoder/1/model.onnx")


# -- GPU provider unavailable, SIGTERM with streams and requests in flight --------------------------------------------


def _streamer(url: str, frame: bytes, out: list, results: list) -> None:
    try:
        with connect(url, open_timeout=30) as ws:
            while True:
                ws.send(frame)
                msg = json.loads(ws.recv(timeout=30))
                results.append(msg["type"])
                time.sleep(0.05)
    except ConnectionClosed as exc:
        out.append((exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "no close frame"))
    except Exception as exc:  # reported by the test
        out.append((None, f"{type(exc).__name__}: {exc}"))


def _poster(base: str, video: bytes, out: list) -> None:
    try:
        r = httpx.post(f"{base}/predict/affect", files=[("file", ("clip.mp4", video, "video/mp4"))], timeout=60)
        out.append(("answered", r.status_code, r.text[:200], time.monotonic()))
    except httpx.ConnectError as exc:
        out.append(("refused", 0, str(exc), time.monotonic()))
    except httpx.HTTPError as exc:
        out.append(("dropped", 0, f"{type(exc).__name__}: {exc}", time.monotonic()))


@pytest.mark.slow
def test_sigterm_with_streams_and_requests_in_flight(students_root: Path, tmp_path: Path, face_rgb: np.ndarray,
                                                     small_face_jpeg: bytes, figures: Figures) -> None:
    import cv2

    shutdown_s = 8.0
    server = ServeProcess(students_root, tmp_path, env={"CUDA_VISIBLE_DEVICES": ""},  # no GPU, even where one is
                         providers="cuda", shutdown_timeout_s=shutdown_s, max_streams=4)
    try:
        ready = server.wait_ready()
        # the GPU provider was asked for and is not there: every model runs on CPU, and /readyz says so
        assert ready["status"] == "ready"
        assert {m["provider"] for m in ready["models"]} == {"CPU"}
        assert all(p == ["CPU"] for m in ready["models"] for p in m["providers"].values())
        small = cv2.resize(face_rgb, (160, 160), interpolation=cv2.INTER_AREA)
        video = write_mp4([shifted(small, i % 8) for i in range(150)], fps=25)  # 6 s: 30 frames at 5 fps
        closes: list = []
        results: list = []
        streams = [threading.Thread(target=_streamer, args=(f"{server.ws}/ws/stream?task={t}", small_face_jpeg,
                                                            closes, results)) for t in ("pain", "affect", "pain")]
        for t in streams:
            t.start()
        deadline = time.monotonic() + 60
        while len(results) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(results) >= 6, f"the streams did not get going: {closes}"
        answers: list = []
        posts = [threading.Thread(target=_poster, args=(server.http, video, answers)) for _ in range(4)]
        for t in posts:
            t.start()
        time.sleep(0.1)  # uploaded and being decoded when the signal comes
        t0 = time.monotonic()
        server.terminate()
        code = server.proc.wait(timeout=shutdown_s + 20)
        exit_s = time.monotonic() - t0
        for t in streams + posts:
            t.join(timeout=30)
    finally:
        server.stop()
    log = server.log()
    # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done: exit 0, or killed by SIGTERM
    assert code in (0, -signal.SIGTERM), log[-2000:]
    assert exit_s < shutdown_s + 5, f"exit took {exit_s:.1f} s"
    assert len(closes) == 3 and all(c == (1001, "server shutting down") for c in closes), closes
    assert len(answers) == 4
    for kind, status, text, _ in answers:  # answered, or refused cleanly; never a 5xx other than 503, never dropped
        assert (kind == "answered" and status in (200, 503)) or kind == "refused", (kind, status, text)
    in_flight = sum(1 for kind, _, _, at in answers if kind == "answered" and at > t0)
    assert in_flight > 0, "no request was still in flight when SIGTERM came"
    assert re.search(r'"message": "closing streams", "streams": 3, "code": 1001', log) and "service stopped" in log
    # the fallback is in the log too: a CPU-only onnxruntime build, or a GPU build that found no device
    assert "provider cuda requested but" in log or "CUDAExecutionProvider was asked for but could not start" in log
    summary = ", ".join(f"{k} {s}" if s else k for k, s, _, _ in answers) + f" ({in_flight} after the signal)"
    figures.add("faults", fault="GPU provider unavailable (PKDOT_PROVIDERS=cuda on a CPU machine)", tried=1,
                survived=True, detail="ready; /readyz reports CPU for every graph; the log says cuda was asked for")
    figures.add("faults", fault="SIGTERM with 3 streams and 4 video requests in flight", tried=7, survived=True,
                detail=f"streams closed 1001 'server shutting down'; requests: {summary}; exit status "
                       f"{'0' if code == 0 else 'SIGTERM (143)'} after {exit_s:.1f} s (limit {shutdown_s:g} s + 5)")
    figures.add("sigterm", exit_s=round(exit_s, 2), streams=len(closes), requests=summary)
