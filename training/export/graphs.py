"""The ONNX graphs a model is exported as, and the one torch → ONNX call.

The graph contract (DESIGN.md §4, "Model folder"), which the service is written against:

    streaming student   encoder: frames (batch, 3, S, S) → embedding (batch, D)           once per frame
                        head:    embeddings (batch, T, D), the last T frame embeddings, oldest first →
                                 pain: logits, probabilities (softmax), embedding;  affect: va (tanh), embedding
    other student       model:   video (batch, T, 3, S, S) → the head's outputs
    teacher             model:   video (batch, T, 3, S, S), privileged (batch, ...) → the head's outputs

Every graph has float32 inputs and outputs and a dynamic batch axis named "batch"; `embedding` at the output is
the joint embedding z (what PKDOT distils). An fp16 export keeps this float32 interface: the graph casts its inputs
to float16, computes in float16, and casts its outputs back (probabilities are computed from the float32 logits).

Exporter: the TorchScript tracer (`torch.onnx.export(..., dynamo=False)`). In torch 2.13 it honours opset 17 and
exports these models in under a second; the dynamo exporter needs opset ≥ 18 here (its down-conversion to 17 fails
on `Pad`) and takes ~15 s a graph. The tracer cannot see data-dependent Python control flow, which is why every
export is checked against PyTorch on real and random inputs (`training.export.parity`).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUTPUT_NAMES = {"pain": ("logits", "probabilities", "embedding"), "affect": ("va", "embedding")}
BATCH = "batch"
EXAMPLE_BATCH = 2  # traced with two samples, so no size-1 axis gets specialised away
EXPORTER = "torch.onnx.export, TorchScript tracer (dynamo=False)"


@dataclass
class GraphDef:
    """One ONNX graph: the module to trace, its named inputs (shape without the batch axis) and its outputs."""

    name: str  # "encoder", "head" or "model"
    module: nn.Module  # forward(*inputs) -> tuple of tensors, in `outputs` order
    inputs: dict[str, tuple[int, ...]]
    outputs: tuple[str, ...]


def _task_outputs(out: dict[str, torch.Tensor], task: str) -> tuple[torch.Tensor, ...]:
    if task == "pain":
        logits = out["logits"].float()  # (B, C)
        return logits, F.softmax(logits, dim=-1), out["embedding"].float()
    return out["va"].float(), out["embedding"].float()  # (B, 2), (B, d)


class _Graph(nn.Module):
    def __init__(self, model: nn.Module, task: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.task, self.dtype = model, task, dtype

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dtype == torch.float32 else x.to(self.dtype)


class EncoderGraph(_Graph):
    """frames (B, 3, S, S) → embedding (B, D): the streaming student's per-frame encoder."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode_frames(self._in(frames)).float()  # (B, D)


class HeadGraph(_Graph):
    """embeddings (B, T, D) → task outputs: the streaming student's temporal head over cached frame embeddings."""

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _task_outputs(self.model.forward_embeddings(self._in(embeddings)), self.task)


class ClipGraph(_Graph):
    """video (B, T, 3, S, S) → task outputs: a non-streaming student as one graph."""

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _task_outputs(self.model(self._in(video)), self.task)


class TeacherGraph(_Graph):
    """video (B, T, 3, S, S), privileged (B, ...) → task outputs."""

    def forward(self, video: torch.Tensor, privileged: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _task_outputs(self.model(self._in(video), self._in(privileged)), self.task)


def is_streaming(model: nn.Module) -> bool:
    """A student that exposes the per-frame encoder and the head over cached embeddings (StreamingStudent)."""
    return callable(getattr(model, "encode_frames", None)) and callable(getattr(model, "forward_embeddings", None))


def build_graphs(model: nn.Module, *, task: str, role: str, size: int, window: int,
                 privileged_shape: tuple[int, ...] | None = None, precision: str = "fp32") -> list[GraphDef]:
    """The graphs of `model` per the contract above. precision "fp16" wraps a float16 copy of the model."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"graphs are built in fp32 or fp16, not {precision!r} (int8 is quantised from fp32)")
    model = model.eval()
    dtype = torch.float32
    if precision == "fp16":
        model, dtype = copy.deepcopy(model).half().eval(), torch.float16
    outputs = OUTPUT_NAMES[task]
    frame = (3, size, size)
    if role == "teacher":
        if privileged_shape is None:
            raise ValueError("a teacher export needs the shape of its privileged input (without the batch axis)")
        return [GraphDef("model", TeacherGraph(model, task, dtype).eval(),
                         {"video": (window, *frame), "privileged": tuple(privileged_shape)}, outputs)]
    if is_streaming(model):
        with torch.no_grad():
            dim = int(model.encode_frames(torch.zeros(1, *frame, dtype=dtype)).shape[-1])
        return [GraphDef("encoder", EncoderGraph(model, task, dtype).eval(), {"frames": frame}, ("embedding",)),
                GraphDef("head", HeadGraph(model, task, dtype).eval(), {"embeddings": (window, dim)}, outputs)]
    return [GraphDef("model", ClipGraph(model, task, dtype).eval(), {"video": (window, *frame)}, outputs)]


def example_inputs(graph: GraphDef, batch: int = EXAMPLE_BATCH, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, *shape, generator=g) for shape in graph.inputs.values())


def run_torch(graph: GraphDef, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    graph.module.eval()
    with torch.no_grad():
        out = graph.module(*inputs)
    return out if isinstance(out, tuple) else (out,)


def export_graph(graph: GraphDef, path: str | Path, opset: int) -> None:
    """Trace `graph` into an ONNX file with a dynamic batch axis on every input and output."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    names = [*graph.inputs, *graph.outputs]
    graph.module.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's inference fast path (aten::_native_multi_head_attention) has no ONNX export
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the deprecation notice of the TorchScript exporter, and tracer warnings: parity is checked afterwards
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*will be removed.*")
            warnings.filterwarnings("ignore", message=".*Constant folding.*")
            torch.onnx.export(
                graph.module,
                example_inputs(graph),
                str(path),
                dynamo=False,
                input_names=list(graph.inputs),
                output_names=list(graph.outputs),
                dynamic_axes={n: {0: BATCH} for n in names},
                opset_version=opset,
                do_constant_folding=True,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    graph.module.eval()  # the tracer restores the module's mode; keep it in eval for the parity check
