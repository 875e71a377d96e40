"""Bad input on every REST endpoint and on the WebSocket, over the wire (uvicorn on loopback).

Each case gets the documented status or close code (DESIGN.md section 4) with a message that says what to fix, and
after each one the server is still up and the next valid request succeeds. tests/service/test_errors.py checks the
error contract case by case; this suite throws the whole list at every endpoint and checks the recovery.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.reliability import media
from tests.reliability.conftest import Figures, ProbedServer

LIMIT = 1_000_000  # probed_server's max_request_bytes
PART_HEAD = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
PREDICT = ("/predict/pain", "/predict/affect", "/predict/teacher/pain", "/predict/teacher/affect")


@dataclass(frozen=True)
class Media:
    face_jpeg: bytes
    face_png: bytes
    small_face_jpeg: bytes


@pytest.fixture(scope="module")
def m(face_jpeg: bytes, face_png: bytes, small_face_jpeg: bytes) -> Media:
    return Media(face_jpeg, face_png, small_face_jpeg)


@pytest.fixture(scope="module")
def http(probed_server: ProbedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=probed_server.http, timeout=60) as c:
        yield c


def part(data: bytes, name: str = "face.jpg", ctype: str = "image/jpeg", field_name: str = "file") -> tuple:
    return (field_name, (name, data, ctype))


def valid_signal(endpoint: str) -> list[tuple]:
    if endpoint.endswith("teacher/pain"):
        return [part(media.biovid_csv(seed=1), "s_bio.csv", "text/csv", "signal")]
    if endpoint.endswith("teacher/affect"):
        return [part(media.wav_bytes(1.0), "voice.wav", "audio/wav", "signal")]
    return []


def refused(r: httpx.Response, status: int, pattern: str) -> str:
    """The documented status, a JSON error body, and a message that matches `pattern` (what to fix)."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    message = body["error"]["message"]
    assert re.search(pattern, message, re.I), f"{message!r} does not match {pattern!r}"
    return message


def recovers(http: httpx.Client, server: ProbedServer, endpoint: str, m: Media) -> None:
    """The process is up and the next valid request on the same endpoint succeeds."""
    assert server.thread.is_alive()
    assert http.get("/healthz").status_code == 200
    r = http.post(endpoint, files=[part(m.small_face_jpeg)] + valid_signal(endpoint))
    assert r.status_code == 200, r.text[:300]
    assert r.json()["face_detected"] is True


# -- REST --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    pattern: str  # regex the error message must match
    files: Callable[[Media], list] | None = None  # the image part(s); the teacher's valid signal is added
    content: bytes | None = None
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    signal: Callable[[], list] | None = None  # replaces the valid signal (teacher cases)


IMAGE_CASES = [
    Case("empty body", 422, r"field 'file' is required", content=b"",
         headers={"content-type": "multipart/form-data; boundary=xyz"}),
    Case("no body, no content type", 415, r"send multipart/form-data", content=b""),
    Case("zero-byte JPEG", 400, r"'face.jpg' is empty", lambda m: [part(b"")]),
    Case("zero-byte PNG", 400, r"'face.png' is empty", lambda m: [part(b"", "face.png", "image/png")]),
    Case("truncated JPEG", 400, r"face.jpg.*(truncated|corrupt)", lambda m: [part(m.face_jpeg[:3000])]),
    Case("truncated PNG", 400, r"face.png.*(truncated|corrupt)",
         lambda m: [part(m.face_png[: len(m.face_png) // 3], "face.png", "image/png")]),
    Case("JPEG signature only", 400, r"header is truncated", lambda m: [part(b"\xff\xd8\xff")]),
    Case("text file named .jpg", 415, r"'face.jpg' is neither a JPEG/PNG image nor a video",
         lambda m: [part(b"hello, I am a text file")]),
    Case("text file among frames", 415, r"file 2 \('2.jpg'\) is not a JPEG or PNG",
         lambda m: [part(m.small_face_jpeg, "1.jpg"), part(b"text", "2.jpg")]),
    Case("1x1 PNG (a result: no face)", 200, "", lambda m: [part(media.png_1x1(), "dot.png", "image/png")]),
    Case("1x1 JPEG (a result: no face)", 200, "", lambda m: [part(media.jpeg_1x1(), "dot.jpg")]),
    Case("20000x20000 PNG header", 413, r"20000x20000 pixels; the limit is",
         lambda m: [part(media.forged_png(20000, 20000), "bomb.png", "image/png")]),
    Case("20000x20000 JPEG header", 413, r"20000x20000 pixels; the limit is",
         lambda m: [part(media.forged_jpeg(20000, 20000), "bomb.jpg")]),
    Case("0x0 PNG header", 400, r"no pixels", lambda m: [part(media.forged_png(0, 0), "none.png", "image/png")]),
    Case("JSON instead of multipart", 415, r"multipart/form-data.*application/json",
         content=b'{"file": "face.jpg"}', headers={"content-type": "application/json"}),
    Case("raw JPEG body", 415, r"multipart/form-data.*image/jpeg", content=b"\xff\xd8\xff\xe0",
         headers={"content-type": "image/jpeg"}),
    Case("urlencoded form", 415, r"multipart/form-data", content=b"file=face.jpg",
         headers={"content-type": "application/x-www-form-urlencoded"}),
    Case("malformed multipart", 400, r"malformed multipart", content=b"--xyz\r\nnonsense",
         headers={"content-type": "multipart/form-data"}),
    Case("image in the wrong field", 422, r"field 'file' is required.*fields sent: image",
         lambda m: [part(m.small_face_jpeg, field_name="image")]),
    Case("too many files", 422, r"5 files sent; the limit is 4", lambda m: [part(m.small_face_jpeg)] * 5),
    Case("far too many parts", 422, r"too many form parts", lambda m: [part(b"x")] * 40),
    Case("video with no frames", 400, r"no frames", lambda m: [part(media.avi_without_frames(), "v.avi",
                                                                     "video/x-msvideo")]),
    Case("MP4 with no frames", 415, r"video stream", lambda m: [part(media.mp4_without_frames(), "v.mp4",
                                                                      "video/mp4")]),
    Case("WAV as the image", 415, r"'a.wav' is neither .* video stream",
         lambda m: [part(media.wav_bytes(0.5), "a.wav", "audio/wav")]),
    Case("unknown model", 404, r"unknown \w+ model 'nope'; loaded:", lambda m: [part(m.small_face_jpeg)],
         params={"model": "nope"}),
    Case("invalid model name", 422, r"model: String should match pattern", lambda m: [part(m.small_face_jpeg)],
         params={"model": "../../etc"}),
    Case("empty model name", 422, r"model:", lambda m: [part(m.small_face_jpeg)], params={"model": ""}),
]

TEACHER_CASES = {
    "/predict/teacher/pain": [
        Case("no signal", 422, r"field 'signal' is required once \(sent 0\)", signal=lambda: []),
        Case("two signals", 422, r"field 'signal' is required once \(sent 2\)",
             signal=lambda: [part(media.biovid_csv(), "a.csv", "text/csv", "signal")] * 2),
        Case("empty signal", 400, r"the signal is empty", signal=lambda: [part(b"", "s.csv", "text/csv", "signal")]),
        Case("CSV wrong columns", 400, r"missing column\(s\) emg_trapezius",
             signal=lambda: [part(media.biovid_csv(columns=("gsr", "ecg")), "s.csv", "text/csv", "signal")]),
        Case("CSV unknown column", 400, r"unknown column\(s\) 'heart'",
             signal=lambda: [part(media.biovid_csv(columns=("gsr", "ecg", "emg_trapezius", "heart")), "s.csv",
                                  "text/csv", "signal")]),
        Case("CSV with NaN", 400, r"line 3, column 'gsr': value 'nan' is not finite",
             signal=lambda: [part(b"time\tgsr\tecg\temg_trapezius\n0\t1\t1\t1\n1953\tnan\t1\t1\n", "s.csv",
                                  "text/csv", "signal")]),
        Case("CSV too short", 400, r"lasts 1 s; the window \[0, 5.5\) s needs 5.5 s",
             signal=lambda: [part(media.biovid_csv(seconds=1.0), "s.csv", "text/csv", "signal")]),
        Case("CSV wrong sampling rate", 400, r"sampling rate .* is 1000 Hz, expected 512 Hz",
             signal=lambda: [part(media.biovid_csv(rate=1000.0), "s.csv", "text/csv", "signal")]),
        Case("CSV comma-separated", 400, r"not tab-separated",
             signal=lambda: [part(media.biovid_csv().replace(b"\t", b","), "s.csv", "text/csv", "signal")]),
        Case("CSV in UTF-16", 400, r"not a text file",
             signal=lambda: [part(media.biovid_csv(1.0).decode().encode("utf-16"), "s.csv", "text/csv", "signal")]),
        Case("WAV as the biosignal", 400, r"'?s.wav'?: not a text file",
             signal=lambda: [part(media.wav_bytes(), "s.wav", "audio/wav", "signal")]),
        Case("JSON with NaN", 400, r"channel 'gsr' has a non-finite value",
             signal=lambda: [part(media.signal_json(value=float("nan")), "s.json", "application/json", "signal")]),
        Case("CSV value beyond float32", 400, r"line 3, column 'ecg': value '-1e39' is out of range",
             signal=lambda: [part(b"time\tgsr\tecg\temg_trapezius\n0\t1\t1\t1\n1953\t1\t-1e39\t1\n", "s.csv",
                                  "text/csv", "signal")]),
        Case("JSON values too large to normalise", 400, r"values up to 3e\+37; send it in the sensor's own units",
             signal=lambda: [part(json.dumps({"rate_hz": 512, "channels": {c: [3e37, -3e37] * 1408 for c in (
                 "gsr", "ecg", "emg_trapezius")}}).encode(), "s.json", "application/json", "signal")]),
        Case("JSON wrong sampling rate", 422, r"sampled at 256 Hz; this teacher needs 512 Hz",
             signal=lambda: [part(media.signal_json(rate_hz=256.0), "s.json", "application/json", "signal")]),
        Case("JSON too short", 400, r"the recording lasts",
             signal=lambda: [part(media.signal_json(seconds=0.5), "s.json", "application/json", "signal")]),
        Case("JSON without rate", 422, r"rate_hz",
             signal=lambda: [part(b'{"channels": {"gsr": [1]}}', "s.json", "application/json", "signal")]),
        Case("JSON nested too deeply", 400, r"not valid JSON: nested too deeply",
             signal=lambda: [part(media.deep_json(), "s.json", "application/json", "signal")]),
        Case("JSON truncated", 400, r"not valid JSON",
             signal=lambda: [part(media.signal_json()[:50], "s.json", "application/json", "signal")]),
    ],
    "/predict/teacher/affect": [
        Case("no signal", 422, r"field 'signal' is required once", signal=lambda: []),
        Case("WAV that is not audio", 400, r"could not be opened as audio",
             signal=lambda: [part(media.wav_not_audio(), "v.wav", "audio/wav", "signal")]),
        Case("text named .wav", 400, r"could not be opened as audio",
             signal=lambda: [part(b"hello, I am a text file", "v.wav", "audio/wav", "signal")]),
        Case("image as the audio", 400, r"no audio stream",
             signal=lambda: [part(media.png_1x1(), "v.wav", "audio/wav", "signal")]),
        Case("WAV without samples", 400, r"no samples",
             signal=lambda: [part(media.wav_bytes(0.0), "v.wav", "audio/wav", "signal")]),
        Case("biosignal CSV as the audio", 400, r"could not be opened as audio",
             signal=lambda: [part(media.biovid_csv(1.0), "s.csv", "text/csv", "signal")]),
    ],
}

REST_CASES = [pytest.param(ep, c, id=f"{ep.removeprefix('/predict/')}:{c.name}") for ep in PREDICT
              for c in IMAGE_CASES]
REST_CASES += [pytest.param(ep, c, id=f"{ep.removeprefix('/predict/')}:{c.name}") for ep, cases in
               TEACHER_CASES.items() for c in cases]


@pytest.mark.parametrize(("endpoint", "case"), REST_CASES)
def test_rest_bad_input(http: httpx.Client, probed_server: ProbedServer, m: Media, figures: Figures, endpoint: str,
                        case: Case) -> None:
    if case.content is not None:
        r = http.post(endpoint, content=case.content, headers=case.headers, params=case.params)
    else:
        images = case.files(m) if case.files else [part(m.small_face_jpeg)]
        signal = case.signal() if case.signal else valid_signal(endpoint)
        r = http.post(endpoint, files=images + signal, params=case.params)
    if case.status == 200:
        assert r.status_code == 200, r.text[:300]
        body = r.json()
        assert body["face_detected"] is False and body["frames_received"] == 1
        message = "a result: face_detected false"
    else:
        message = refused(r, case.status, case.pattern)
    recovers(http, probed_server, endpoint, m)
    figures.add("bad_input", surface=endpoint, case=case.name, expected=case.status, got=r.status_code,
                message=message, recovered=True)


@pytest.mark.parametrize(("method", "path", "status", "pattern"), [
    ("POST", "/healthz", 405, r"POST is not allowed on /healthz; use GET"),
    ("GET", "/predict/pain", 405, r"GET is not allowed on /predict/pain; use POST"),
    ("DELETE", "/v1/models", 405, r"DELETE is not allowed"),
    ("POST", "/predict/anger", 404, r"unknown task 'anger'; expected one of pain, affect"),
    ("POST", "/predict/teacher/anger", 404, r"unknown task 'anger'"),
    ("GET", "/no/such/route", 404, r"no route /no/such/route; see /docs"),
    ("GET", "/demo/..%2F..%2Fpyproject.toml", 404, r"."),
])
def test_rest_wrong_route_or_method(http: httpx.Client, probed_server: ProbedServer, m: Media, figures: Figures,
                                    method: str, path: str, status: int, pattern: str) -> None:
    files = [part(m.small_face_jpeg)] if method == "POST" else None
    message = refused(http.request(method, path, files=files), status, pattern)
    recovers(http, probed_server, "/predict/pain", m)
    figures.add("bad_input", surface="routes", case=f"{method} {path}", expected=status, got=status,
                message=message, recovered=True)


def _raw(port: int, request: bytes, body_chunks: Iterator[bytes] = iter(())) -> tuple[str, int]:
    """Send a raw request, then body chunks until the server answers; (answer, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        for chunk in body_chunks:
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            time.sleep(0.002)
        s.settimeout(30)
        answer = s.recv(65536).decode("latin-1")
    return answer, sent


@pytest.mark.parametrize("endpoint", PREDICT)
def test_oversized_upload_refused_without_reading_it(probed_server: ProbedServer, m: Media, figures: Figures,
                                                     endpoint: str) -> None:
    head = (f"POST {endpoint} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n").encode()
    # declared: refused from the Content-Length header, before any of the body is sent
    answer, _ = _raw(probed_server.port, head + f"Content-Length: {100 * LIMIT}\r\n\r\n".encode())
    assert answer.startswith("HTTP/1.1 413") and f"limit of {LIMIT} bytes" in answer
    # chunked: counted as it streams in and refused as soon as it passes the limit
    def chunks() -> Iterator[bytes]:
        for c in [PART_HEAD] + [bytes(65536)] * (3 * LIMIT // 65536):
            yield f"{len(c):x}\r\n".encode() + c + b"\r\n"

    answer, sent = _raw(probed_server.port, head + b"Transfer-Encoding: chunked\r\n\r\n", chunks())
    assert answer.startswith("HTTP/1.1 413") and "over the limit" in answer
    assert sent < 2 * LIMIT, f"the client could send {sent} bytes before the refusal"
    with httpx.Client(base_url=probed_server.http, timeout=60) as http:
        recovers(http, probed_server, endpoint, m)
    figures.add("bad_input", surface=endpoint, case="oversized upload (Content-Length, chunked)", expected=413,
                got=413, message=f"refused after {sent} of {3 * LIMIT} chunked bytes", recovered=True)


@pytest.mark.parametrize(("name", "request_bytes", "status"), [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("invalid header name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    ("invalid Content-Length", b"POST /predict/pain HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    ("WebSocket upgrade without a key", b"GET /ws/stream?task=pain HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
])
def test_malformed_http(probed_server: ProbedServer, m: Media, figures: Figures, name: str, request_bytes: bytes,
                        status: int) -> None:
    answer, _ = _raw(probed_server.port, request_bytes)
    got = int(answer.split(" ", 2)[1]) if answer.startswith("HTTP/1.1 ") else 0
    assert 400 <= got < 500, answer[:200]
    with httpx.Client(base_url=probed_server.http, timeout=60) as http:
        recovers(http, probed_server, "/predict/pain", m)
    figures.add("bad_input", surface="HTTP", case=name, expected=f"{status} (4xx)", got=got,
                message=answer.split("\r\n", 1)[0], recovered=True)


# -- WebSocket -------------------------------------------------------------------------------------------------------


def stream_works(server: ProbedServer, m: Media) -> None:
    with connect(f"{server.ws}/ws/stream?task=pain", max_size=2**20) as ws:
        ws.send(m.small_face_jpeg)
        result = json.loads(ws.recv(timeout=30))
    assert result["type"] == "result" and result["face_detected"] and result["seq"] == 0


WS_CLOSES = [  # (case, query, messages, close code, reason pattern)
    ("no task", "", [], 1008, r"task is required"),
    ("unknown task", "task=anger", [], 1008, r"unknown task 'anger'"),
    ("unknown model", "task=pain&model=nope", [], 1008, r"unknown pain model 'nope'"),
    ("model of the other task", "task=pain&model=affect-student", [], 1008, r"unknown pain model"),
    ("text that is not JSON", "task=pain", ["hello"], 1003, r"send frames as binary"),
    ("truncated JSON", "task=pain", ['{"type": "ping"'], 1003, r"JSON control messages"),
    ("JSON that is not an object", "task=pain", ["[1, 2]"], 1003, r"JSON control messages"),
    ("JSON null", "task=pain", ["null"], 1003, r"JSON control messages"),
    ("unknown control type", "task=pain", ['{"type": "dance"}'], 1003, r"type ping, reset or calibrate"),
    ("JSON nested too deeply", "task=pain", ["[" * 2000 + "]" * 2000], 1003, r"JSON control messages"),
    ("oversized control message", "task=pain", ['{"type": "ping", "pad": "' + "x" * 5000 + '"}'], 1009,
     r"control message over 4096 bytes"),
    ("oversized frame", "task=pain", [bytes(300_001)], 1009, r"frame 0 has 300001 bytes; the limit is 300000"),
    ("frame over the protocol limit", "task=pain", [bytes(700_000)], 1009, r"."),
]


@pytest.mark.parametrize(("name", "query", "messages", "code", "pattern"), WS_CLOSES, ids=[c[0] for c in WS_CLOSES])
def test_ws_protocol_violation_closes_with_code_and_reason(probed_server: ProbedServer, m: Media, figures: Figures,
                                                          name: str, query: str, messages: list, code: int,
                                                          pattern: str) -> None:
    with connect(f"{probed_server.ws}/ws/stream?{query}", max_size=2**20) as ws, \
            pytest.raises(ConnectionClosed) as info:
        for msg in messages:
            ws.send(msg)
        while True:
            ws.recv(timeout=30)
    rcvd = info.value.rcvd
    assert rcvd is not None and rcvd.code == code, f"closed with {rcvd}"
    assert re.search(pattern, rcvd.reason), rcvd.reason
    stream_works(probed_server, m)
    figures.add("bad_input", surface="WebSocket", case=name, expected=f"close {code}", got=f"close {rcvd.code}",
                message=rcvd.reason, recovered=True)


WS_ERRORS = [  # (case, message, error code in the error message, pattern); the stream goes on
    ("zero-byte frame", b"", 400, r"empty"),
    ("truncated JPEG frame", "face_jpeg[:3000]", 400, r"truncated|corrupt"),
    ("truncated PNG frame", "face_png[:third]", 400, r"truncated|corrupt"),
    ("text bytes as a frame", b"hello, I am a text file", 400, r"not a JPEG or PNG"),
    ("WAV as a frame", "wav", 400, r"not a JPEG or PNG"),
    ("20000x20000 PNG header", "bomb_png", 400, r"20000x20000 pixels; the limit is"),
    ("20000x20000 JPEG header", "bomb_jpeg", 400, r"20000x20000 pixels; the limit is"),
    ("ping with a NaN id", '{"type": "ping", "id": NaN}', 422, r"ping: id must be"),
    ("ping with an object id", '{"type": "ping", "id": {"a": [1, 2]}}', 422, r"ping: id must be"),
    ("ping with a 100-digit id", '{"type": "ping", "id": ' + "9" * 100 + "}", 422, r"ping: id must be"),
    ("calibrate with text seconds", '{"type": "calibrate", "seconds": "3"}', 422, r"seconds must be a number"),
    ("calibrate for a year", '{"type": "calibrate", "seconds": 3e7}', 422, r"seconds must be a number in \(0, 60\]"),
]


def _ws_message(m: Media, recipe: bytes | str) -> bytes | str:
    recipes = {"face_jpeg[:3000]": lambda: m.face_jpeg[:3000],
               "face_png[:third]": lambda: m.face_png[: len(m.face_png) // 3],
               "wav": lambda: media.wav_bytes(0.5), "bomb_png": lambda: media.forged_png(20000, 20000),
               "bomb_jpeg": lambda: media.forged_jpeg(20000, 20000)}
    return recipes[recipe]() if isinstance(recipe, str) and recipe in recipes else recipe


@pytest.mark.parametrize(("name", "recipe", "code", "pattern"), WS_ERRORS, ids=[c[0] for c in WS_ERRORS])
def test_ws_bad_message_is_an_error_and_the_stream_goes_on(probed_server: ProbedServer, m: Media, figures: Figures,
                                                           name: str, recipe: bytes | str, code: int,
                                                           pattern: str) -> None:
    message = _ws_message(m, recipe)
    with connect(f"{probed_server.ws}/ws/stream?task=affect", max_size=2**20) as ws:
        ws.send(message)
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["error"]["code"] == code, error
        assert re.search(pattern, error["error"]["message"]), error
        if isinstance(message, bytes):
            assert error["seq"] == 0
        ws.send(m.small_face_jpeg)  # the same stream goes on
        result = json.loads(ws.recv(timeout=30))
    assert result["type"] == "result" and result["face_detected"]
    assert result["seq"] == (1 if isinstance(message, bytes) else 0)
    stream_works(probed_server, m)
    figures.add("bad_input", surface="WebSocket", case=name, expected=f"error {code}, stream goes on",
                got=f"error {error['error']['code']}", message=error["error"]["message"], recovered=True)


def test_ws_1x1_frame_is_a_result_without_a_face(probed_server: ProbedServer, m: Media, figures: Figures) -> None:
    with connect(f"{probed_server.ws}/ws/stream?task=pain") as ws:
        ws.send(media.png_1x1())
        result = json.loads(ws.recv(timeout=30))
        ws.send(m.small_face_jpeg)
        after = json.loads(ws.recv(timeout=30))
    assert result["type"] == "result" and result["face_detected"] is False and result["prediction"] is None
    assert after["face_detected"] and after["seq"] == 1
    figures.add("bad_input", surface="WebSocket", case="1x1 frame (a result: no face)", expected="result",
                got="result", message="face_detected false", recovered=True)
