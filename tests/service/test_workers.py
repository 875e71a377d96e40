"""`pkdot serve --workers 2`: two real worker processes on one port share the stream limit and the metrics."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from benchmarks.common import BenchContext
from benchmarks.server import ServerProcess, process_tree
from service.core.errors import WS_TRY_AGAIN_LATER
from tests.service.conftest import encode_jpeg

pytestmark = pytest.mark.timeout(300)


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text, whatever the order of its labels."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+)$", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if found == labels:
                return float(match.group(3))
    raise AssertionError(f"{name} {labels} not in /metrics")


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        return r.read().decode()


def test_two_workers_share_the_stream_limit_and_the_metrics(tmp_path: Path, face_rgb, model_root: Path) -> None:
    ctx = BenchContext(cache_dir=tmp_path, models_dir=model_root)
    with ServerProcess(ctx, ["--workers", "2", "--max-streams", "3"], label="workers") as server:
        assert len([p for p in process_tree(server.pid) if p != server.pid]) >= 2  # the workers (and uvicorn's)
        ws_url = server.url.replace("http://", "ws://") + "/ws/stream?task=pain"
        frame = encode_jpeg(face_rgb)
        streams = []
        try:
            for _ in range(3):  # connections land on either worker
                ws = connect(ws_url, max_size=2**20).__enter__()  # closed in the finally below
                ws.send(frame)
                assert json.loads(ws.recv(timeout=30))["type"] == "result"
                streams.append(ws)
            for _ in range(4):  # every worker sees the other's streams: a fourth is refused, whichever gets it
                with connect(ws_url, max_size=2**20) as extra, pytest.raises(ConnectionClosed) as closed:
                    extra.send(frame)
                    extra.recv(timeout=30)
                assert closed.value.rcvd.code == WS_TRY_AGAIN_LATER
            for _ in range(4):  # whichever worker answers /metrics, it reports both
                text = _metrics(server.url)
                assert _metric(text, "pkdot_active_streams") == 3
                assert _metric(text, "pkdot_stream_frames_total", task="pain", outcome="processed") == 3
                assert _metric(text, "pkdot_streams_refused_total", code="1013") == 4
            streams.pop().close()
            deadline = time.monotonic() + 10
            while _metric(_metrics(server.url), "pkdot_active_streams") != 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            with connect(ws_url, max_size=2**20) as again:  # the freed place is taken again
                again.send(frame)
                assert json.loads(again.recv(timeout=30))["type"] == "result"
        finally:
            for ws in streams:
                ws.close()
