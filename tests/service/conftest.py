"""Fixtures of the service tests: small but real model folders, media files, and apps built from them.

Until the bundled models exist, `model_root` writes tiny ONNX graphs (exported from torch modules) that honour
the graph contract of DESIGN.md section 4 into Triton-layout folders with a valid, sha256-checked manifest:

    pain-student      streaming: encoder frames (B, 3, 32, 32) -> embedding (B, 16); head embeddings (B, T, 16)
                      -> logits, probabilities (B, 5), embedding
    affect-student    streaming, head -> va (B, 2) in [-1, 1], embedding
    pain-clip         one-graph student: video (B, T, 3, 32, 32) -> logits, probabilities, embedding
    pain-teacher      video + privileged biosignal spectrogram (B, 3, 65, 127) -> logits, probabilities, embedding
    affect-teacher    video + privileged log-mel (B, 1, 64, 101) -> va, embedding
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
import warnings
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from pkdot_contract.manifest import folder_files

with warnings.catch_warnings():  # Starlette's TestClient still uses httpx: imported once here, quietly
    warnings.simplefilter("ignore")
    import fastapi.testclient  # noqa: F401

S = 32  # crop size of the test models
T = 4  # temporal window
D = 16  # frame embedding size
PAIN_LABELS = ["BL1", "PA1", "PA2", "PA3", "PA4"]
CROP = {"size": S, "margin": 0.25, "colour": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
FRAME_RATE = 5.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:  # Starlette's TestClient still uses httpx; nothing to do about it here
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"))


# -- tiny ONNX graphs --------------------------------------------------------------------------------------------------


def _modules():
    import torch
    import torch.nn as nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.proj = nn.Linear(8, D)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(frames))  # (B, 8, S/2, S/2)
            return self.proj(x.mean(dim=(2, 3)))  # (B, D)

    class Head(nn.Module):
        def __init__(self, task: str) -> None:
            super().__init__()
            self.task = task
            self.temporal = nn.Linear(D, D)
            self.out = nn.Linear(D, 5 if task == "pain" else 2)

        def forward(self, embeddings: torch.Tensor):
            z = torch.tanh(self.temporal(embeddings.mean(dim=1) + 0.5 * embeddings[:, -1]))  # (B, D)
            y = self.out(z)
            if self.task == "pain":
                return y, torch.softmax(y, dim=-1), z
            return torch.tanh(y), z

    class ClipModel(nn.Module):
        """video (B, T, 3, S, S) [+ privileged (B, ...)] -> task outputs."""

        def __init__(self, task: str, privileged: bool) -> None:
            super().__init__()
            self.encoder, self.head, self.privileged = Encoder(), Head(task), privileged
            self.signal = nn.Linear(1, D)

        def forward(self, video: torch.Tensor, privileged: torch.Tensor | None = None):
            b, t = video.shape[0], video.shape[1]
            e = self.encoder(video.reshape(b * t, *video.shape[2:])).reshape(b, t, D)  # (B, T, D)
            if self.privileged:
                p = privileged.reshape(b, -1).mean(dim=1, keepdim=True)  # (B, 1)
                e = e + self.signal(p)[:, None]  # (B, T, D)
            return self.head(e)

    return torch, Encoder, Head, ClipModel


def _export(module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)


def _spec(name: str, shape: list, dtype: str = "float32") -> dict:
    return {"name": name, "shape": shape, "dtype": dtype}


def _write_folder(root: Path, name: str, task: str, role: str, graphs: dict, privileged: dict | None = None) -> Path:
    folder = root / name
    for graph in graphs:
        (folder / graph).mkdir(parents=True, exist_ok=True)
        (folder / graph / "config.pbtxt").write_text(
            f'name: "{graph}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n')
    (folder / "MODEL_CARD.md").write_text(f"# {name}\n\nA tiny test model (random weights).\n")
    outputs = ({"kind": "classification", "labels": PAIN_LABELS} if task == "pain"
               else {"kind": "regression", "ranges": {"valence": [-1, 1], "arousal": [-1, 1]}})
    pre = {"crop": CROP, "window": T, "frame_rate": FRAME_RATE, "detector": {"name": "mediapipe-blazeface-short-range"}}
    if privileged:
        pre["privileged"] = privileged
    manifest = {
        "schema_version": 1, "name": name, "version": "0.0.1-test", "task": task, "role": role,
        "graphs": {g: {"file": f"{g}/1/model.onnx", "inputs": s["inputs"], "outputs": s["outputs"]}
                   for g, s in graphs.items()},
        "opset": 17, "precision": "fp32", "preprocessing": pre, "outputs": outputs,
        "files": folder_files(folder), "provenance": {"test": True}, "licence": "Apache-2.0",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def build_models(root: Path) -> None:
    torch, Encoder, Head, ClipModel = _modules()
    torch.manual_seed(0)
    head_out = {"pain": ["logits", "probabilities", "embedding"], "affect": ["va", "embedding"]}
    out_specs = {"pain": [_spec("logits", ["batch", 5]), _spec("probabilities", ["batch", 5]),
                          _spec("embedding", ["batch", D])],
                 "affect": [_spec("va", ["batch", 2]), _spec("embedding", ["batch", D])]}
    batch = {n: {0: "batch"} for n in ["logits", "probabilities", "embedding", "va"]}
    for task in ("pain", "affect"):
        folder = root / f"{task}-student"
        enc, head = Encoder(), Head(task)
        _export(enc, (torch.randn(2, 3, S, S),), folder / "encoder/1/model.onnx", ["frames"], ["embedding"],
                {"frames": {0: "batch"}, "embedding": {0: "batch"}})
        _export(head, (torch.randn(2, T, D),), folder / "head/1/model.onnx", ["embeddings"], head_out[task],
                {"embeddings": {0: "batch", 1: "time"}, **{k: v for k, v in batch.items() if k in head_out[task]}})
        _write_folder(root, f"{task}-student", task, "student", {
            "encoder": {"inputs": [_spec("frames", ["batch", 3, S, S])], "outputs": [_spec("embedding", ["batch", D])]},
            "head": {"inputs": [_spec("embeddings", ["batch", "time", D])], "outputs": out_specs[task]}})

    clip = ClipModel("pain", privileged=False)
    _export(clip, (torch.randn(2, T, 3, S, S),), root / "pain-clip/model/1/model.onnx", ["video"],
            head_out["pain"], {"video": {0: "batch"}, **{k: v for k, v in batch.items() if k in head_out["pain"]}})
    _write_folder(root, "pain-clip", "pain", "student", {
        "model": {"inputs": [_spec("video", ["batch", T, 3, S, S])], "outputs": out_specs["pain"]}})

    teachers = {
        "pain": ([3, 65, 127], {"modality": "biosignal", "transform": "spectrogram", "rate_hz": 512.0,
                                "channels": ["gsr", "ecg", "emg_trapezius"], "window_s": 5.5,
                                "params": {"start_s": 0.0, "end_s": 5.5, "normalise": "zscore",
                                           "spectrogram_start_s": 2.0, "spectrogram_end_s": 5.0, "nperseg": 16,
                                           "noverlap": 4, "nfft": 128}}),
        "affect": ([1, 64, 101], {"modality": "audio", "transform": "log-mel", "rate_hz": 16000.0, "channels": [],
                                  "window_s": 1.0, "params": {"n_mels": 64, "n_fft": 512, "win_length": 400,
                                                                 "hop_length": 160}}),
    }
    for task, (shape, privileged) in teachers.items():
        model = ClipModel(task, privileged=True)
        path = root / f"{task}-teacher/model/1/model.onnx"
        example = (torch.randn(2, T, 3, S, S), torch.randn(2, *shape))
        _export(model, example, path, ["video", "privileged"], head_out[task],
                {"video": {0: "batch"}, "privileged": {0: "batch"},
                 **{k: v for k, v in batch.items() if k in head_out[task]}})
        _write_folder(root, f"{task}-teacher", task, "teacher", {
            "model": {"inputs": [_spec("video", ["batch", T, 3, S, S]), _spec("privileged", ["batch", *shape])],
                      "outputs": out_specs[task]}}, privileged)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test model, in one models directory."""
    pytest.importorskip("torch", reason="the test models are exported from torch modules (install the train extra)")
    root = tmp_path_factory.mktemp("models")
    build_models(root)
    return root


@pytest.fixture(scope="session")
def students_root(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the two streaming students (no teacher folder)."""
    root = tmp_path_factory.mktemp("students")
    for name in ("pain-student", "affect-student"):
        shutil.copytree(model_root / name, root / name)
    return root


@pytest.fixture(scope="session")
def broken_root(students_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The students, plus a copy of pain-student whose encoder was changed after export (sha256 mismatch)."""
    root = tmp_path_factory.mktemp("broken")
    for name in ("pain-student", "affect-student"):
        shutil.copytree(students_root / name, root / name)
    broken = root / "pain-tampered"
    shutil.copytree(students_root / "pain-student", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["name"] = "pain-tampered"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with open(broken / "encoder/1/model.onnx", "ab") as f:
        f.write(b"\0")
    return root


# -- apps ------------------------------------------------------------------------------------------------------------


def make_settings(models_dir: Path, **overrides):
    from service.core.config import Settings

    defaults = dict(models_dir=models_dir, detector_workers=2, preprocess_threads=4, log_format="json")
    return Settings(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def settings_factory(model_root: Path) -> Callable:
    return lambda models_dir=None, **kw: make_settings(models_dir or model_root, **kw)


@pytest.fixture(scope="session")
def client(model_root: Path) -> Iterator:
    """The real app on every test model: real ONNX Runtime, real MediaPipe."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(make_settings(model_root))) as c:
        yield c


class LiveServer:
    """`service.server.Server` (uvicorn) on a free loopback port, in a thread."""

    def __init__(self, settings) -> None:
        from service.app import create_app
        from service.server import Server, uvicorn_config

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app(settings)
        self.server = Server(uvicorn_config(self.app, settings, host="127.0.0.1", port=self.port,
                                            log_level="warning"), self.app)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="module")
def live_server(model_root: Path) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(model_root, max_batch_delay_ms=20.0, max_batch_size=8)).start()
    yield server
    server.stop()


# -- media -------------------------------------------------------------------------------------------------------------


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def shifted(rgb: np.ndarray, dx: int, dy: int = 0) -> np.ndarray:
    """The image moved by (dx, dy) pixels, edges replicated: a face that moves between frames."""
    import cv2

    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def write_mp4(frames: list[np.ndarray], fps: int = 25) -> bytes:
    """H.264 MP4 in memory (PyAV)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def biovid_csv(seconds: float = 5.5, rate: float = 512.0, columns: tuple[str, ...] = ("gsr", "ecg", "emg_trapezius"),
               seed: int = 0) -> bytes:
    """A BioVid Part A biosignal file: tab-separated, `time` in µs, one row per sample."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    lines = ["\t".join(("time", *columns))]
    values = {c: np.sin(2 * np.pi * (1 + i) * t) + 0.1 * rng.standard_normal(n) for i, c in enumerate(columns)}
    for i in range(n):
        lines.append("\t".join([str(int(round(t[i] * 1e6)))] + [f"{values[c][i]:.5f}" for c in columns]))
    return ("\n".join(lines) + "\n").encode()


def wav_bytes(seconds: float = 2.0, rate: int = 16000, freq: float = 440.0) -> bytes:
    n = int(seconds * rate)
    samples = (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="session")
def noise_jpeg() -> bytes:
    return encode_jpeg(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def face_mp4(face_rgb: np.ndarray) -> bytes:
    """1 s of the astronaut at 25 fps, 256x256, the face drifting right."""
    import cv2

    small = cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    return write_mp4([shifted(small, i // 2) for i in range(25)], fps=25)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (installed by scripts/install-browser.sh when missing); skips with the reason otherwise."""
    from tests.service.browser import install_browser

    path, why = install_browser("chromium")
    if path is None:
        pytest.skip(why)
    return path
