"""ONNX export of the streaming student's two graphs (FrameEncoder; TemporalHead + task head) and numeric parity
with onnxruntime. Uses the torch.export-based exporter (`dynamo=True`, torch 2.13's default)."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.export import Dim

from training.models import StreamingStudent

TOLERANCE = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # torch.export internals



@pytest.fixture(scope="module")
def graphs() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    model = StreamingStudent(task="pain", num_classes=5)
    for m in model.modules():  # realistic BatchNorm statistics: fresh ones make eval activations vanish
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass sets the statistics of the batch
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 4, 3, 112, 112))
    return model.export_graphs()


def export(module: torch.nn.Module, example: torch.Tensor, path, names: tuple[str, str], dynamic: dict) -> None:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        verbose=False,
        input_names=[names[0]],
        output_names=[names[1]],
        dynamic_shapes=(dynamic,),
    )
    onnx.checker.check_model(onnx.load(str(path)))


def run_ort(path, name: str, x: torch.Tensor) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy()})[0]


def test_frame_encoder_onnx_dynamic_batch(graphs, tmp_path) -> None:
    encoder, path = graphs["encoder"], tmp_path / "encoder.onnx"
    export(encoder, torch.randn(2, 3, 112, 112), path, ("frames", "embedding"), {0: Dim("batch", min=1, max=1024)})
    for batch in (1, 5):
        x = torch.randn(batch, 3, 112, 112)
        with torch.no_grad():
            expected = encoder(x).numpy()
        got = run_ort(path, "frames", x)
        assert got.shape == (batch, 256)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize(("graph", "width"), [("temporal", 512), ("head", 5)])
def test_temporal_head_onnx_dynamic_batch_and_window(graphs, tmp_path, graph: str, width: int) -> None:
    """The bare TemporalHead (→ joint embedding) and the exported head graph (TemporalHead + PainHead → logits)."""
    module = graphs["head"].temporal if graph == "temporal" else graphs["head"]
    path = tmp_path / f"{graph}.onnx"
    dynamic = {0: Dim("batch", min=1, max=1024), 1: Dim("time", min=1, max=512)}
    export(module, torch.randn(2, 16, 256), path, ("embeddings", "output"), dynamic)
    for batch, window in ((1, 1), (3, 16), (2, 40)):  # a stream's first frame, the usual window, a long one
        x = torch.randn(batch, window, 256)
        with torch.no_grad():
            expected = module(x).numpy()
        got = run_ort(path, "embeddings", x)
        assert got.shape == (batch, width)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE)
