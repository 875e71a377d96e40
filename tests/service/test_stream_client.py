"""`pkdot stream` against a real uvicorn server: a video file streamed, JSON output parsed, the summary's numbers
checked against the answers, and every failure mapped to its exit status with a clear message."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.server import serve

from service.client import command
from tests.service.conftest import FRAME_RATE, LiveServer, make_settings, shifted, write_mp4

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 50  # 2 s at 25 fps
KEY = "client-key-51c0"


@pytest.fixture(scope="module")
def face_video(face_rgb: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    small = cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("video") / "face.mp4"
    path.write_bytes(write_mp4([shifted(small, i % 12) for i in range(FRAMES)], fps=25))
    return path


@pytest.fixture(scope="module")
def keyed_server(students_root: Path) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(students_root, api_key=KEY)).start()
    yield server
    server.stop()


def stream(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args([str(a) for a in argv]))


def json_lines(text: str) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines[-1]["type"] == "summary"
    return lines[:-1], lines[-1]


def check_accounting(messages: list[dict], summary: dict) -> None:
    results = [m for m in messages if m["type"] == "result"]
    errors = [m for m in messages if m["type"] == "error" and "seq" in m]
    assert summary["answered"] == len(results) and summary["errors"] == len(errors)
    assert summary["answered"] + summary["dropped"] + summary["errors"] + summary["unanswered"] == summary["sent"]
    seqs = [m["seq"] for m in results + errors]
    assert sorted(seqs) == seqs and len(set(seqs)) == len(seqs)  # answered in order, once each
    assert summary["dropped"] == summary["server_dropped"] == (results[-1]["dropped"] if results else 0)
    assert summary["faces"] == sum(r["face_detected"] for r in results)
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert all(r["latency_ms"] > 0 for r in results)


def test_stream_a_video_file_as_json(live_server: LiveServer, face_video: Path, capsys) -> None:
    assert stream(face_video, "--url", live_server.ws, "--json", "--fast") == 0
    messages, summary = json_lines(capsys.readouterr().out)
    check_accounting(messages, summary)
    assert summary["outcome"] == "completed" and summary["frames_read"] == summary["sent"] == FRAMES
    assert summary["answered"] == FRAMES and summary["dropped"] == summary["unanswered"] == 0  # window 1
    assert [m["seq"] for m in messages] == list(range(FRAMES))
    assert summary["faces"] >= FRAMES - 2
    for m in messages:
        p = m["smoothed"]
        assert len(p["probabilities"]) == 5 and sum(p["probabilities"]) == pytest.approx(1, abs=1e-5)


def test_a_wider_window_lets_the_server_drop_frames(live_server: LiveServer, face_video: Path, capsys) -> None:
    assert stream(face_video, "--url", live_server.ws, "--json", "--fast", "--window", "4", "--task", "affect") == 0
    messages, summary = json_lines(capsys.readouterr().out)
    check_accounting(messages, summary)
    assert summary["sent"] == FRAMES and summary["unanswered"] == 0
    assert messages[-1]["seq"] == FRAMES - 1  # the last frame is never dropped: nothing newer replaces it
    assert all(-1 <= m["smoothed"]["valence"] <= 1 for m in messages if m["smoothed"])


def test_a_file_plays_at_its_own_speed_sampled_to_fps(live_server: LiveServer, face_video: Path, capsys,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.streams.session"):
        assert stream(face_video, "--url", live_server.ws, "--json", "--fps", "10") == 0
        deadline = time.monotonic() + 5
        while not (summaries := [r for r in caplog.records if getattr(r, "event", None) == "stream_summary"]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    messages, summary = json_lines(capsys.readouterr().out)
    check_accounting(messages, summary)
    assert summary["frames_read"] == FRAMES
    assert 19 <= summary["sent"] + summary["skipped"] <= 21  # 2 s at 10 fps
    assert 1.7 <= summary["duration_s"] <= 4.0
    # the client says it sends 10 frames/s: the server's window takes every 2nd frame (the test models' 5 fps)
    assert summaries[-1].window_stride == round(10 / FRAME_RATE) == 2


def test_text_output_is_a_table_and_a_summary(live_server: LiveServer, face_video: Path, capsys) -> None:
    assert stream(face_video, "--url", live_server.ws.replace("ws://", "http://"), "--max-frames", "8",
                  "--fast", "--calibrate", "0.2") == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].split()[:5] == ["seq", "face", "level", "p", "expected"]
    rows = [line.split() for line in lines[1:9]]
    assert [int(r[0]) for r in rows] == list(range(8)) and all(r[1] == "face" for r in rows)
    assert lines[9].startswith("frames: read 8, sent 8, answered 8 (8 with a face), dropped 0, errors 0")
    assert lines[10].startswith("latency ms: p50 ")
    assert "calibrating for 0.2 s" in out.err


@pytest.mark.parametrize("case", ["unreachable", "no file", "not a video", "unknown model", "no key", "bad url"])
def test_failures_have_clear_messages_and_exit_statuses(case: str, live_server: LiveServer, keyed_server,
                                                        face_video: Path, tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]  # nothing listens there
    argv, status, words = {
        "unreachable": ([face_video, "--url", f"ws://127.0.0.1:{free}"], 3, "cannot reach the server"),
        "no file": ([tmp_path / "missing.mp4", "--url", live_server.ws], 2, "no such file"),
        "not a video": ([garbage, "--url", live_server.ws], 2, "not a video"),
        "unknown model": ([face_video, "--url", live_server.ws, "--model", "nope"], 4, "1008 policy): unknown pain"),
        "no key": ([face_video, "--url", keyed_server.ws], 4, "API key"),
        "bad url": ([face_video, "--url", "ftp://example.org"], 2, "invalid server URL"),
    }[case]
    assert stream(*argv, "--json") == status
    out = capsys.readouterr()
    assert words in out.err and "Traceback" not in out.err
    if status in (3, 4):  # the stream started: JSON mode still ends with its summary line
        assert json.loads(out.out.splitlines()[-1])["outcome"] == {3: "unreachable", 4: "refused"}[status]


def test_api_key_goes_in_the_handshake(keyed_server: LiveServer, face_video: Path, capsys) -> None:
    assert stream(face_video, "--url", keyed_server.ws, "--api-key", KEY, "--json", "--fast", "--max-frames", "5") == 0
    messages, summary = json_lines(capsys.readouterr().out)
    check_accounting(messages, summary)
    assert summary["answered"] == 5


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A WebSocket server that accepts frames and never answers."""
    def swallow(ws) -> None:
        for _ in ws:
            pass

    with serve(swallow, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()
    thread.join(timeout=10)


def test_no_answer_gives_up_after_the_timeout(silent_server: str, face_video: Path, capsys) -> None:
    assert stream(face_video, "--url", silent_server, "--timeout", "1", "--fast") == 5
    out = capsys.readouterr()
    assert "no answer for 1 s" in out.err
    assert "sent 1, answered 0 (0 with a face), dropped 0, errors 0, unanswered 1" in out.out


def test_server_shutting_down_mid_stream(model_root: Path, face_video: Path, capsys) -> None:
    server = LiveServer(make_settings(model_root)).start()
    codes: list[int] = []
    client = threading.Thread(target=lambda: codes.append(stream(face_video, "--url", server.ws, "--json",
                                                                 "--fps", "5", "--timeout", "5",
                                                                 "--reconnect", "0")))
    client.start()
    try:
        deadline = time.monotonic() + 30
        while len(server.app.state.streams) == 0 and time.monotonic() < deadline:  # the stream is open
            time.sleep(0.05)
        time.sleep(0.6)  # and a few frames were answered
    finally:
        server.stop()
    client.join(timeout=30)
    assert codes == [5]
    out = capsys.readouterr()
    assert "(1001): server shutting down" in out.err
    messages, summary = json_lines(out.out)
    assert summary["outcome"] == "lost" and 1 <= summary["answered"] <= summary["sent"]


def test_pkdot_stream_command(live_server: LiveServer, face_video: Path) -> None:
    """The real `pkdot stream` process: help, then a short stream with machine output."""
    run = [sys.executable, "-m", "pkdot", "stream"]
    help_text = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert help_text.returncode == 0 and "--window" in help_text.stdout and "--json" in help_text.stdout
    done = subprocess.run([*run, str(face_video), "--url", live_server.ws, "--json", "--max-frames", "6", "--fast"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    messages, summary = json_lines(done.stdout)
    assert summary["sent"] == summary["answered"] == len(messages) == 6
