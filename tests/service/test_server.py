"""The service behind a real uvicorn server on loopback: a real `websockets` client, real HTTP clients, concurrent
requests batched together, the request-size limit on the wire, and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.service.conftest import LiveServer, encode_jpeg, make_settings, shifted


@pytest.fixture(scope="module")
def frames(face_rgb: np.ndarray) -> list[bytes]:
    return [encode_jpeg(shifted(face_rgb, i)) for i in range(8)]


def test_stream_with_a_real_websocket_client(live_server: LiveServer, frames: list[bytes]) -> None:
    with connect(f"{live_server.ws}/ws/stream?task=pain", max_size=2**20) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None  # per-message deflate is off
        results = []
        for f in frames:
            ws.send(f)
            results.append(json.loads(ws.recv(timeout=10)))
        ws.send(json.dumps({"type": "ping", "id": 1}))
        pong = json.loads(ws.recv(timeout=10))
    assert [r["seq"] for r in results] == list(range(len(frames)))
    assert all(r["face_detected"] and sum(r["prediction"]["probabilities"]) == pytest.approx(1) for r in results)
    assert pong["type"] == "pong" and pong["id"] == 1


def test_fast_sender_over_the_network(live_server: LiveServer, frames: list[bytes]) -> None:
    n = 60
    with connect(f"{live_server.ws}/ws/stream?task=affect") as ws:
        for i in range(n):
            ws.send(frames[i % len(frames)])
        results = []
        while not results or results[-1]["seq"] != n - 1:
            msg = json.loads(ws.recv(timeout=20))
            if msg["type"] == "result":
                results.append(msg)
    assert results[-1]["dropped"] > 0
    assert len(results) + results[-1]["dropped"] == n


def test_refusals_carry_close_codes_over_the_network(live_server: LiveServer) -> None:
    with connect(f"{live_server.ws}/ws/stream?task=nope") as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd.code == 1008 and "unknown task" in info.value.rcvd.reason
    with connect(f"{live_server.ws}/ws/stream?task=pain") as ws, pytest.raises(ConnectionClosed) as info:
        ws.send("not json")
        ws.recv(timeout=10)
    assert info.value.rcvd.code == 1003


def _batch_counts(metrics: str, model: str, graph: str) -> tuple[float, float]:
    """(calls, calls with more than one row) from the batch-size histogram."""
    def value(pattern: str) -> float:
        m = re.search(pattern, metrics)
        return float(m.group(1)) if m else 0.0

    total = value(rf'pkdot_batch_size_count{{graph="{graph}",model="{model}"}} (\S+)')
    single = value(rf'pkdot_batch_size_bucket{{graph="{graph}",le="1.0",model="{model}"}} (\S+)')
    return total, total - single


def test_concurrent_requests_are_batched_and_answered_correctly(live_server: LiveServer,
                                                                frames: list[bytes]) -> None:
    async def post(client: httpx.AsyncClient, data: bytes) -> dict:
        r = await client.post("/predict/pain", files=[("file", ("f.jpg", data, "image/jpeg"))])
        assert r.status_code == 200, r.text
        return r.json()["prediction"]

    async def main() -> tuple[list[dict], list[dict]]:
        async with httpx.AsyncClient(base_url=live_server.http, timeout=30) as client:
            alone = [await post(client, f) for f in frames]  # one at a time: the reference answers
            together = await asyncio.gather(*(post(client, frames[i % len(frames)]) for i in range(24)))
        return alone, together

    before = _batch_counts(httpx.get(f"{live_server.http}/metrics").text, "pain-student", "encoder")
    alone, together = asyncio.run(main())
    for i, p in enumerate(together):  # each request got its own rows back
        np.testing.assert_allclose(p["probabilities"], alone[i % len(frames)]["probabilities"], atol=1e-5)
    calls, batched = _batch_counts(httpx.get(f"{live_server.http}/metrics").text, "pain-student", "encoder")
    assert batched - before[1] > 0, "no ONNX Runtime call held more than one request"
    assert calls - before[0] < len(frames) + 24  # fewer calls than requests


def test_oversized_body_refused_before_it_is_sent(live_server: LiveServer) -> None:
    """413 arrives although only the headers and a few bytes of a 1 GB body were sent."""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as s:
        s.sendall(b"POST /predict/pain HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 1000000000\r\n\r\n--b\r\n")
        reply = s.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413") and "limit" in reply


def test_graceful_shutdown_closes_streams_with_1001(model_root, face_jpeg: bytes) -> None:
    server = LiveServer(make_settings(model_root)).start()
    try:
        with connect(f"{server.ws}/ws/stream?task=pain") as ws:
            ws.send(face_jpeg)
            assert json.loads(ws.recv(timeout=10))["type"] == "result"
            t0 = time.monotonic()
            server.server.should_exit = True
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ws.recv(timeout=10)
        assert info.value.rcvd.code == 1001 and "shutting down" in info.value.rcvd.reason
        server.thread.join(timeout=15)
        assert not server.thread.is_alive() and time.monotonic() - t0 < 15
    finally:
        server.stop()
