"""Security: the API key on every route, nothing of a frame, a signal or the key in the logs, nothing written to
disk while a stream runs, and a dependency audit of constraints.txt.

The log and disk checks watch a real `pkdot serve` process at log level debug (the most it will ever write), with
its own working directory and TMPDIR, while streams and uploads go through it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from service.app import create_app
from tests.reliability.conftest import ROOT, Figures, ServeProcess
from tests.service.conftest import encode_jpeg, make_settings

KEY = "k3y-9f2c5e7a1b"
# Open without the key, on purpose: probes (orchestrators call them without secrets), the demo page and its two
# static files (they hold no secret; the page asks for the key and sends it itself), and the API documentation.
PUBLIC = {"/healthz", "/readyz", "/demo", "/demo/{asset}", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
URLS = {"/predict/{task}": "/predict/anger", "/predict/teacher/{task}": "/predict/teacher/pain",
        "/demo/{asset}": "/demo/demo.js"}  # a concrete URL for each templated route


# -- the API key on every route ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(students_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(students_root, api_key=KEY, warmup=False))) as c:
        yield c


def _routes(routes: list, prefix: str = "") -> list[tuple[str, str]]:
    """(method or 'WS', path) of every route the app serves, documented or not, included routers walked."""
    out = []
    for r in routes:
        if hasattr(r, "original_router"):  # FastAPI keeps included routers as branches
            out += _routes(r.original_router.routes, prefix + getattr(r.include_context, "prefix", ""))
        elif isinstance(r, APIWebSocketRoute | WebSocketRoute):
            out.append(("WS", prefix + r.path))
        elif isinstance(r, APIRoute | Route):
            out += [(m, prefix + r.path) for m in sorted(r.methods or {"GET"}) if m != "HEAD"]
    return out


def test_api_key_on_every_route(keyed: TestClient, small_face_jpeg: bytes, figures: Figures) -> None:
    routes = _routes(keyed.app.routes)
    assert ("WS", "/ws/stream") in routes and ("GET", "/metrics") in routes and ("GET", "/demo") in routes
    for method, path in routes:
        if method == "WS":
            continue
        url = URLS.get(path, path)
        assert "{" not in url, f"add a concrete URL for {path} to URLS"
        files = [("file", ("f.jpg", small_face_jpeg, "image/jpeg"))] if method == "POST" else None
        without = keyed.request(method, url, files=files)
        wrong = keyed.request(method, url, files=files, headers={"X-API-Key": KEY + "x"})
        right = keyed.request(method, url, files=files, headers={"X-API-Key": KEY})
        if path in PUBLIC:
            assert without.status_code == right.status_code != 401, (method, path)
            assert KEY not in without.text, f"{path} shows the key"
            verdict = f"open ({without.status_code}); holds no key"
        else:
            for r in (without, wrong):
                assert r.status_code == 401, (method, path, r.status_code)
                assert "X-API-Key" in r.json()["error"]["message"] and KEY not in r.text
            assert right.status_code != 401, (method, path)
            verdict = f"401 without or with a wrong key; {right.status_code} with it"
        figures.add("api_key", route=f"{method} {path}", result=verdict)


def test_api_key_on_the_websocket(keyed: TestClient, small_face_jpeg: bytes, figures: Figures) -> None:
    refusals = {"no key": ("/ws/stream?task=pain", None), "wrong key in the URL": (f"/ws/stream?task=pain&api_key="
                                                                                   f"{KEY}x", None),
                "wrong key in the auth message": ("/ws/stream?task=pain", json.dumps({"type": "auth",
                                                                                      "api_key": "nope"})),
                "a frame where the auth message is expected": ("/ws/stream?task=pain", small_face_jpeg),
                "auth message that is not JSON": ("/ws/stream?task=pain", "api_key=" + KEY)}
    for name, (url, first) in refusals.items():
        with keyed.websocket_connect(url) as ws:
            if isinstance(first, bytes):
                ws.send_bytes(first)
            elif first is not None:
                ws.send_text(first)
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text()
        assert info.value.code == 1008 and "API key" in info.value.reason, name
        figures.add("api_key", route=f"WS /ws/stream, {name}", result=f"close 1008 '{info.value.reason[:40]}...'")
    for name, (url, first, headers) in {
            "key in the URL": (f"/ws/stream?task=pain&api_key={KEY}", None, {}),
            "key in the X-API-Key header": ("/ws/stream?task=pain", None, {"X-API-Key": KEY}),
            "key in the first message": ("/ws/stream?task=pain", json.dumps({"type": "auth", "api_key": KEY}), {})
    }.items():
        with keyed.websocket_connect(url, headers=headers) as ws:
            if first:
                ws.send_text(first)
            ws.send_bytes(small_face_jpeg)
            assert ws.receive_json()["type"] == "result", name
        figures.add("api_key", route=f"WS /ws/stream, {name}", result="admitted")


# -- logs and disk, on a real process at log level debug -------------------------------------------------------------


@dataclass
class Traffic:
    frames: list[bytes] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    wav: bytes = b""
    csv_values: list[str] = field(default_factory=list)
    json_values: list[str] = field(default_factory=list)
    writable_files: set[str] = field(default_factory=set)
    fd_samples: int = 0
    log: str = ""
    before: dict[str, tuple] = field(default_factory=dict)
    after: dict[str, tuple] = field(default_factory=dict)
    watched: list[str] = field(default_factory=list)


def _distinct_frames(face_rgb: np.ndarray, n: int, seed: int) -> list[bytes]:
    """The face with a different noise patch in a corner: every frame's bytes are its own."""
    rng = np.random.default_rng(seed)
    small = cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    out = []
    for _ in range(n):
        img = small.copy()
        img[-40:, -40:] = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        out.append(encode_jpeg(img))
    return out


def _noise_wav(seconds: float, seed: int) -> bytes:
    samples = (np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 3000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _signal_csv(values: list[str]) -> bytes:
    lines = ["time\tgsr\tecg\temg_trapezius"]
    for i in range(2816):
        v = values[i % len(values)]
        lines.append(f"{round(i * 1953.125)}\t{v}\t{v}\t{v}")
    return ("\n".join(lines) + "\n").encode()


def _tree(root: Path) -> dict[str, tuple]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _writable_files(pid: int) -> set[str]:
    """Regular files the process holds open for writing (flags O_WRONLY or O_RDWR), from /proc."""
    found = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
            flags = int(next(line.split()[1] for line in (Path(f"/proc/{pid}/fdinfo") / fd).read_text().splitlines()
                             if line.startswith("flags:")), 8)
        except (OSError, StopIteration):
            continue
        if flags & 0o3 and target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            found.add(target)
    return found


def _stream(url: str, frames: list[bytes], first: str | None = None, headers: dict | None = None) -> int:
    answered = 0
    with connect(url, additional_headers=headers or {}, open_timeout=30, max_size=2**20) as ws:
        if first:
            ws.send(first)
        for f in frames:
            ws.send(f)
            if json.loads(ws.recv(timeout=30))["type"] == "result":
                answered += 1
            time.sleep(0.03)  # a paced stream, so that the file-descriptor sampler sees it at work
        ws.send(json.dumps({"type": "ping", "id": "end"}))
        ws.recv(timeout=30)
    return answered


@pytest.fixture(scope="module")
def traffic(model_root: Path, tmp_path_factory: pytest.TempPathFactory, face_rgb: np.ndarray,
            face_png: bytes) -> Traffic:
    work = tmp_path_factory.mktemp("watched")
    t = Traffic()
    server = ServeProcess(model_root, work, api_key=KEY, log_level="debug", log_format="json")
    try:
        server.wait_ready()
        t.watched = [str(server.cwd), str(server.tmpdir), str(server.home), str(model_root)]
        t.before = {k: v for d in t.watched for k, v in _tree(Path(d)).items()}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                t.writable_files |= _writable_files(server.pid)
                t.fd_samples += 1
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t.frames = _distinct_frames(face_rgb, 16, seed=7)
        auth = json.dumps({"type": "auth", "api_key": KEY})
        assert _stream(f"{server.ws}/ws/stream?task=pain", t.frames[:8] + [t.frames[0][:2000]], first=auth) == 8
        assert _stream(f"{server.ws}/ws/stream?task=affect&api_key={KEY}", t.frames[8:12]) == 4
        assert _stream(f"{server.ws}/ws/stream?task=pain", t.frames[12:], headers={"X-API-Key": KEY}) == 4
        big = cv2.imencode(".png", cv2.resize(face_rgb, (1024, 1024)))[1].tobytes()
        assert len(big) > 1_100_000  # over Starlette's 1 MB spool limit: would be a temporary file if spooled
        t.images = [big, face_png]
        headers = {"X-API-Key": KEY}
        with httpx.Client(base_url=server.http, headers=headers, timeout=60) as http:
            for image, name in ((big, "big.png"), (face_png, "face.png")):
                r = http.post("/predict/pain", files=[("file", (name, image, "image/png"))])
                assert r.status_code == 200, r.text
            t.csv_values = [f"{987654.321 + 7.013 * i:.3f}" for i in range(40)]
            r = http.post("/predict/teacher/pain", files=[("file", ("f.jpg", t.frames[0], "image/jpeg")),
                                                          ("signal", ("s.csv", _signal_csv(t.csv_values), "text/csv"))])
            assert r.status_code == 200, r.text
            t.json_values = [f"{424242.5 + 3.17 * i:.2f}" for i in range(30)]
            signal = {"rate_hz": 512, "channels": {c: [float(t.json_values[i % 30]) for i in range(2816)]
                                                   for c in ("gsr", "ecg", "emg_trapezius")}}
            r = http.post("/predict/teacher/pain", files=[("file", ("f.jpg", t.frames[1], "image/jpeg")),
                                                          ("signal", ("s.json", json.dumps(signal).encode(),
                                                                      "application/json"))])
            assert r.status_code == 200, r.text
            bad = _signal_csv(t.csv_values).replace(t.csv_values[5].encode(), b"abc", 1)
            r = http.post("/predict/teacher/pain", files=[("file", ("f.jpg", t.frames[2], "image/jpeg")),
                                                          ("signal", ("s.csv", bad, "text/csv"))])
            assert r.status_code == 400, r.text
            t.wav = _noise_wav(2.0, seed=3)
            r = http.post("/predict/teacher/affect", files=[("file", ("f.jpg", t.frames[3], "image/jpeg")),
                                                            ("signal", ("v.wav", t.wav, "audio/wav"))])
            assert r.status_code == 200, r.text
        stop.set()
        sampler.join(timeout=10)
        t.after = {k: v for d in t.watched for k, v in _tree(Path(d)).items()}
    finally:
        server.stop()
    t.log = server.log()
    return t


def _byte_patterns(data: bytes, name: str) -> dict[str, str]:
    """How bytes of `data` would look in a text log: hex (plain, spaced), base64, Python escapes, latin-1 text."""
    out = {}
    n = len(data)
    for at in sorted({0, 16, n // 3, n // 2, n - 24}):
        w = data[at : at + 12]
        out[f"{name}[{at}] hex"] = w.hex()
        out[f"{name}[{at}] spaced hex"] = w.hex(" ")
        out[f"{name}[{at}] escaped"] = repr(w)[2:-1]
        if all(32 <= b < 127 for b in w):
            out[f"{name}[{at}] text"] = w.decode()
    b64 = base64.b64encode(data).decode()
    for at in (0, len(b64) // 2 // 4 * 4, len(b64) - 24):
        out[f"{name} base64@{at}"] = b64[at : at + 16]
    return out


@pytest.mark.slow
def test_no_frame_signal_or_key_in_the_logs(traffic: Traffic, figures: Figures) -> None:
    log = traffic.log
    lines = log.splitlines()
    assert len(lines) > 20 and '"level": "debug"' in log, "the server did not log at debug level"
    assert sum('"event": "stream_summary"' in line for line in lines) == 3
    patterns = {}
    for i, f in enumerate(traffic.frames):
        patterns |= _byte_patterns(f, f"frame {i}")
    for i, image in enumerate(traffic.images):
        patterns |= _byte_patterns(image, f"upload {i}")
    patterns |= _byte_patterns(traffic.wav[44:], "wav samples")
    patterns |= {f"csv value {v}": v for v in traffic.csv_values}
    patterns |= {f"json value {v}": v for v in traffic.json_values}
    patterns["the API key"] = KEY
    found = {name: p for name, p in patterns.items() if p in log}
    assert not found, f"in the log: {sorted(found)[:10]}"
    figures.add("security", check="no frame, upload, signal bytes or API key in the logs (level debug)",
                result=f"{len(patterns)} patterns searched in {len(lines)} log lines: 0 found")


@pytest.mark.slow
def test_nothing_written_to_disk_during_streams(traffic: Traffic, figures: Figures) -> None:
    created = sorted(set(traffic.after) - set(traffic.before))
    changed = sorted(k for k in traffic.before if traffic.after.get(k) != traffic.before[k])
    assert not created and not changed, f"created {created[:5]}, changed {changed[:5]}"
    assert traffic.fd_samples > 5
    log_file = {str(Path(p).resolve()) for p in traffic.writable_files if p.endswith("server.log")}
    others = sorted(traffic.writable_files - log_file)
    assert not others, f"the server held files open for writing: {others}"
    figures.add("security", check="nothing written to disk during streams and uploads",
                result=f"working dir, TMPDIR, HOME and models dir unchanged ({len(traffic.before)} files); "
                       f"{traffic.fd_samples} samples of /proc/<pid>/fd: no file open for writing but its log")


# -- dependency audit --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dependency_audit(tmp_path: Path, figures: Figures) -> None:
    pytest.importorskip("pip_audit", reason="pip-audit is in the dev extra")
    report = tmp_path / "audit.json"
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(ROOT / "constraints.txt"), "--no-deps", "--disable-pip",
           "--progress-spinner", "off", "--timeout", "20", "--cache-dir", str(tmp_path / "cache"), "-f", "json",
           "-o", str(report)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        reason = "pip-audit did not finish within 300 s (the vulnerability service is too slow or unreachable)"
        figures.add("audit", status="skipped", reason=reason)
        pytest.skip(reason)
    if not report.exists():
        reason = f"the vulnerability service could not be reached: {done.stderr.strip().splitlines()[-1:]}"
        figures.add("audit", status="skipped", reason=reason)
        pytest.skip(reason)
    deps = json.loads(report.read_text())["dependencies"]
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reason = (f"pip-audit could audit none of the {len(deps)} pins of constraints.txt: PyPI's vulnerability API "
                  f"answered for none of them (first: {deps[0]['skip_reason'] if deps else 'no pins'})")
        figures.add("audit", status="skipped", reason=reason, pins=len(deps))
        pytest.skip(reason)
    vulns = [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions']) or 'no release'})"
             for d in audited for v in d.get("vulns", [])]
    figures.add("audit", status="ran", pins=len(deps), audited=len(audited), vulnerabilities=vulns)
    assert not vulns, "known vulnerabilities in constraints.txt:\n" + "\n".join(vulns)
