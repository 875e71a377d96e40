"""Fixtures of the reliability suite: real model folders, servers to attack, a `pkdot serve` subprocess, and the
figures that `python -m tests.reliability.report` publishes in docs/reliability.md.

The model folders are the tiny but real ONNX models of tests/service (built by the same function). Servers are
either the app under uvicorn in a thread (`ProbedServer`, whose event loop the tests can inspect for leaked tasks)
or a real `pkdot serve` process (`ServeProcess`: signals, its own memory, its own log and working directories).
Every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.conftest import LiveServer, build_models, encode_jpeg, make_settings

with warnings.catch_warnings():  # Starlette's TestClient still uses httpx: imported once here, quietly
    warnings.simplefilter("ignore")
    import fastapi.testclient  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
FIGURES_ENV = "PKDOT_RELIABILITY_JSON"  # where the figures go (set by tests.reliability.report)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"))


# -- figures -----------------------------------------------------------------------------------------------------------


class Figures:
    """Rows of the published tables, by section. Tests assert first and record what they saw."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = defaultdict(list)

    def add(self, section: str, **row: object) -> None:
        self.rows[section].append(row)


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    f = Figures()
    yield f
    path = os.environ.get(FIGURES_ENV)
    if path:
        Path(path).write_text(json.dumps(f.rows, indent=1, default=str))


# -- model folders -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test model (two streaming students, a one-graph student, two teachers), in one models directory."""
    pytest.importorskip("torch", reason="the test models are exported from torch modules (install the train extra)")
    root = tmp_path_factory.mktemp("models")
    build_models(root)
    return root


@pytest.fixture(scope="session")
def students_root(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("students")
    for name in ("pain-student", "affect-student"):
        shutil.copytree(model_root / name, root / name)
    return root


# -- media -------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_face_jpeg(face_rgb: np.ndarray) -> bytes:
    """The astronaut at 256x256: a face MediaPipe finds, cheap enough to send after every bad request."""
    import cv2

    return encode_jpeg(cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA))


# -- servers -----------------------------------------------------------------------------------------------------------


class ProbedServer(LiveServer):
    """`LiveServer` whose event loop the test can reach: count its tasks, streams and queued rows."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        serve = self.server.serve

        async def probed(sockets=None) -> None:
            self.loop = asyncio.get_running_loop()
            await serve(sockets)

        self.server.serve = probed

    def on_loop(self, fn: Callable[[], object]) -> object:
        """Run `fn()` on the server's event loop (thread-safe) and return its result."""
        async def call() -> object:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def census(self) -> dict[str, int]:
        """What must come back to its idle value after any fault: tasks, streams, queued rows, threads."""
        ctx = self.app.state.ctx

        def count() -> dict[str, int]:
            pending = sum(b.queued_rows for m in ctx.registry.models.values() for b in m.batchers.values())
            return {"tasks": len(asyncio.all_tasks()), "streams": len(ctx.streams), "queued_rows": pending}

        out = self.on_loop(count)
        out["active_streams_gauge"] = int(self.app.state.metrics.registry.get_sample_value("pkdot_active_streams"))
        out["threads"] = threading.active_count()
        return out

    def settle(self, idle: dict[str, int], timeout: float = 10.0) -> dict[str, int]:
        """Wait until the census is back to `idle` (threads may only shrink); return the last census."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.census()
            back = all(now[k] <= idle[k] for k in ("tasks", "streams", "queued_rows", "active_streams_gauge"))
            if back or time.monotonic() > deadline:
                return now
            time.sleep(0.05)


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), from /proc."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/<pid>/status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """A real `pkdot serve` process on loopback, configured by PKDOT_* variables, its output in a log file."""

    def __init__(self, models_dir: Path, workdir: Path, env: dict[str, str] | None = None, **settings: object) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.tmpdir = workdir / "tmp"
        self.cwd = workdir / "cwd"
        self.home = workdir / "home"  # its own, so that nothing it writes under ~ goes unseen
        for d in (self.tmpdir, self.cwd, self.home):
            d.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        extra, env = env or {}, {k: v for k, v in os.environ.items() if not k.startswith("PKDOT_")}
        env.update({"PYTHONPATH": str(ROOT), "TMPDIR": str(self.tmpdir), "HOME": str(self.home),
                    "XDG_CACHE_HOME": str(self.home / ".cache"), "PKDOT_HOST": "127.0.0.1",
                    "PKDOT_PORT": str(self.port), "PKDOT_MODELS_DIR": str(models_dir), "PKDOT_DETECTOR_WORKERS": "1",
                    "PKDOT_PREPROCESS_THREADS": "2", "PKDOT_INFERENCE_THREADS": "1",
                    "PKDOT_ORT_INTRA_OP_THREADS": "1"})
        env.update({f"PKDOT_{k.upper()}": str(v) for k, v in settings.items()} | extra)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "pkdot", "serve"], cwd=self.cwd, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pkdot serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                r = httpx.get(f"{self.http}/readyz", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pkdot serve was not ready within {timeout:g} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def probed_server(model_root: Path) -> Iterator[ProbedServer]:
    """Every model (teachers included), small limits so that refusals are cheap to provoke."""
    settings = make_settings(model_root, max_request_bytes=1_000_000, max_files=4, max_frame_bytes=300_000,
                             max_control_bytes=4096, max_batch_delay_ms=2.0, detector_workers=1,
                             preprocess_threads=2, inference_threads=1, ort_intra_op_threads=1)
    server = ProbedServer(settings).start()
    yield server
    server.stop()
