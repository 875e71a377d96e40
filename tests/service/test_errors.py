"""Every error path of DESIGN.md section 4: the documented status or close code, a JSON body or a close reason that
says what to fix, and never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.app import create_app
from tests.service.conftest import make_settings, wav_bytes

KEY = "s3cret-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def strict(model_root) -> Iterator[TestClient]:
    """API key on, small limits, one stream at a time, teacher off."""
    settings = make_settings(model_root, api_key=KEY, max_request_bytes=300_000, max_files=3,
                             max_frame_bytes=200_000, max_control_bytes=256, max_streams=1, teacher="off",
                             max_image_pixels=4_000_000)
    with TestClient(create_app(settings)) as c:
        yield c


def _error(r, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == status
    message = body["error"]["message"]
    for w in words:
        assert w.lower() in message.lower(), message
    return message


def _file(data: bytes, name: str = "face.jpg", ctype: str = "image/jpeg") -> list:
    return [("file", (name, data, ctype))]


# -- 400 -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "words"), [
    (b"", ("empty",)),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", ("truncated",)),
])
def test_400_undecodable_image(client, data: bytes, words: tuple) -> None:
    _error(client.post("/predict/pain", files=_file(data)), 400, *words)


def test_400_truncated_jpeg(client, face_jpeg: bytes) -> None:
    _error(client.post("/predict/pain", files=_file(face_jpeg[:2000])), 400, "face.jpg")


def test_400_truncated_video(client, face_mp4: bytes) -> None:
    _error(client.post("/predict/pain", files=_file(face_mp4[: len(face_mp4) // 2], "clip.mp4", "video/mp4")), 400,
           "video")


def test_400_malformed_multipart(client) -> None:
    r = client.post("/predict/pain", content=b"--xyz\r\nnonsense", headers={"content-type": "multipart/form-data"})
    _error(r, 400, "multipart")


# -- 401 -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_401_without_the_key(strict, face_jpeg: bytes, headers: dict) -> None:
    _error(strict.post("/predict/pain", files=_file(face_jpeg), headers=headers), 401, "X-API-Key")
    _error(strict.get("/v1/models", headers=headers), 401)
    _error(strict.get("/metrics", headers=headers), 401)


def test_key_opens_the_door(strict, face_jpeg: bytes) -> None:
    assert strict.post("/predict/pain", files=_file(face_jpeg), headers=AUTH).status_code == 200
    assert strict.get("/metrics", headers=AUTH).status_code == 200
    assert strict.get("/healthz").status_code == 200 and strict.get("/readyz").status_code == 200  # probes stay open


# -- 404 -------------------------------------------------------------------------------------------------------------


def test_404_unknown_task_and_model(client, face_jpeg: bytes) -> None:
    _error(client.post("/predict/anger", files=_file(face_jpeg)), 404, "unknown task", "pain", "affect")
    _error(client.post("/predict/pain", params={"model": "nope"}, files=_file(face_jpeg)), 404, "nope",
           "pain-student")
    _error(client.post("/predict/pain", params={"model": "affect-student"}, files=_file(face_jpeg)), 404)
    _error(client.post("/predict/teacher/anger", files=_file(face_jpeg)), 404, "unknown task")
    _error(client.get("/no/such/route"), 404, "/docs")


def test_404_teacher_disabled_says_how_to_enable(strict, face_jpeg: bytes) -> None:
    r = strict.post("/predict/teacher/pain", files=_file(face_jpeg), headers=AUTH)
    _error(r, 404, "disabled", "PKDOT_TEACHER")


# -- 413 -------------------------------------------------------------------------------------------------------------


def test_413_body_over_the_limit(strict) -> None:
    _error(strict.post("/predict/pain", files=_file(b"\xff\xd8" + bytes(400_000)), headers=AUTH), 413, "limit")


def test_413_chunked_body_over_the_limit(strict) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield bytes(10_000)

    headers = {**AUTH, "content-type": "multipart/form-data; boundary=xyz"}
    _error(strict.post("/predict/pain", content=chunks(), headers=headers), 413, "limit")


def test_413_decompression_bomb_refused_from_header(client) -> None:
    ok, buf = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big")
    _error(client.post("/predict/pain", files=_file(bytes(data), "bomb.png", "image/png")), 413, "20000x20000")


# -- 415 -------------------------------------------------------------------------------------------------------------


def test_415_not_multipart(client) -> None:
    _error(client.post("/predict/pain", json={"file": "face.jpg"}), 415, "multipart/form-data", "application/json")
    _error(client.post("/predict/pain", content=b"\xff\xd8", headers={"content-type": "image/jpeg"}), 415)


def test_415_a_text_file_or_audio_as_the_image(client, face_jpeg: bytes) -> None:
    _error(client.post("/predict/pain", files=_file(b"hello, I am text", "face.jpg")), 415, "face.jpg")
    _error(client.post("/predict/pain", files=_file(wav_bytes(), "a.wav", "audio/wav")), 415, "video stream")
    files = _file(face_jpeg) + _file(b"not an image", "2.jpg")
    _error(client.post("/predict/pain", files=files), 415, "file 2")


# -- 422 -------------------------------------------------------------------------------------------------------------


def test_422_missing_file_field(client, face_jpeg: bytes) -> None:
    _error(client.post("/predict/pain", files=[("image", ("face.jpg", face_jpeg, "image/jpeg"))]), 422, "'file'")
    _error(client.post("/predict/pain", data={"x": "1"}, files=[("y", ("a", b"", "text/plain"))]), 422, "'file'")


def test_422_too_many_files(strict, face_jpeg: bytes) -> None:
    files = _file(face_jpeg[:100]) * 4
    _error(strict.post("/predict/pain", files=files, headers=AUTH), 422, "limit is 3")
    files = _file(b"x") * 20  # past what the form parser accepts at all
    _error(strict.post("/predict/pain", files=files, headers=AUTH), 422, "limit is 3")


def test_422_invalid_model_parameter(client, face_jpeg: bytes) -> None:
    _error(client.post("/predict/pain", params={"model": "bad name!"}, files=_file(face_jpeg)), 422, "model")


def test_422_teacher_without_signal(client, face_jpeg: bytes) -> None:
    _error(client.post("/predict/teacher/pain", files=_file(face_jpeg)), 422, "signal")


# -- WebSocket ---------------------------------------------------------------------------------------------------------


def _closed(ws, *, send: bytes | str | None = None) -> WebSocketDisconnect:
    if isinstance(send, bytes):
        ws.send_bytes(send)
    elif isinstance(send, str):
        ws.send_text(send)
    with pytest.raises(WebSocketDisconnect) as info:
        ws.receive_text()
    return info.value


@pytest.mark.parametrize(("url", "words"), [
    ("/ws/stream", "task"),
    ("/ws/stream?task=anger", "unknown task"),
    ("/ws/stream?task=pain&model=nope", "nope"),
    ("/ws/stream?task=pain&fps=fast", "fps must be a number"),
    ("/ws/stream?task=pain&fps=0", "fps must be a number"),
    ("/ws/stream?task=pain&fps=nan", "fps must be a number"),
    ("/ws/stream?task=pain&fps=1e9", "fps must be a number"),
])
def test_ws_1008_unknown_task_or_model(client, url: str, words: str) -> None:
    with client.websocket_connect(url) as ws:
        closed = _closed(ws)
    assert closed.code == 1008 and words in closed.reason


def test_ws_1008_missing_or_wrong_key(strict) -> None:
    with strict.websocket_connect("/ws/stream?task=pain&api_key=wrong") as ws:
        closed = _closed(ws)
    assert closed.code == 1008 and "API key" in closed.reason
    with strict.websocket_connect("/ws/stream?task=pain") as ws:
        closed = _closed(ws, send='{"type": "auth", "api_key": "wrong"}')
    assert closed.code == 1008


def test_ws_key_by_query_or_first_message(strict, face_jpeg: bytes) -> None:
    with strict.websocket_connect(f"/ws/stream?task=pain&api_key={KEY}") as ws:
        ws.send_bytes(face_jpeg)
        assert ws.receive_json()["type"] == "result"
    with strict.websocket_connect("/ws/stream?task=pain") as ws:
        ws.send_text(f'{{"type": "auth", "api_key": "{KEY}"}}')
        ws.send_bytes(face_jpeg)
        assert ws.receive_json()["type"] == "result"


def test_ws_1003_text_that_is_not_a_control_message(client) -> None:
    for text in ("hello", '{"type": "dance"}', "[1, 2]"):
        with client.websocket_connect("/ws/stream?task=pain") as ws:
            closed = _closed(ws, send=text)
        assert closed.code == 1003 and "binary" in closed.reason


def test_ws_1009_frame_or_control_too_big(strict) -> None:
    with strict.websocket_connect(f"/ws/stream?task=pain&api_key={KEY}") as ws:
        closed = _closed(ws, send=bytes(200_001))
    assert closed.code == 1009 and "limit" in closed.reason
    with strict.websocket_connect(f"/ws/stream?task=pain&api_key={KEY}") as ws:
        closed = _closed(ws, send='{"type": "ping", "pad": "' + "x" * 300 + '"}')
    assert closed.code == 1009


def test_ws_1013_server_full(strict, face_jpeg: bytes) -> None:
    with strict.websocket_connect(f"/ws/stream?task=pain&api_key={KEY}") as first:
        first.send_bytes(face_jpeg)
        assert first.receive_json()["type"] == "result"
        with strict.websocket_connect(f"/ws/stream?task=affect&api_key={KEY}") as second:
            closed = _closed(second)
        assert closed.code == 1013 and "full" in closed.reason
        first.send_bytes(face_jpeg)  # the admitted stream is unaffected
        assert first.receive_json()["type"] == "result"
    metrics = strict.get("/metrics", headers=AUTH).text
    assert 'pkdot_streams_refused_total{code="1013"} 1.0' in metrics


def test_ws_undecodable_frame_is_an_error_message_and_the_stream_goes_on(client, face_jpeg: bytes) -> None:
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        ws.send_bytes(b"not an image")
        error = ws.receive_json()
        assert error["type"] == "error" and error["seq"] == 0 and error["error"]["code"] == 400
        assert "JPEG or PNG" in error["error"]["message"]
        ws.send_bytes(face_jpeg[:1000])  # truncated
        assert ws.receive_json()["error"]["code"] == 400
        ws.send_bytes(face_jpeg)
        result = ws.receive_json()
        assert result["type"] == "result" and result["seq"] == 2 and result["face_detected"]


def test_ws_invalid_control_values_are_errors(client) -> None:
    with client.websocket_connect("/ws/stream?task=pain") as ws:
        ws.send_text('{"type": "calibrate", "seconds": -1}')
        error = ws.receive_json()
        assert error["type"] == "error" and error["error"]["code"] == 422
        ws.send_text('{"type": "ping", "id": 7}')
        assert ws.receive_json() == {"type": "pong", "id": 7, "ts": pytest.approx(0, abs=1e10)}
