"""Numeric parity of an exported graph with the PyTorch module it came from (export is a checked step).

Each graph runs in ONNX Runtime (CPU) and in PyTorch on the same inputs — real face crops (and what the encoder
makes of them) and random normal inputs — at batch sizes 1 and 8. The export fails unless, for every output,

    max |onnx − torch|  ≤  atol + rtol · max |torch|        (the bound scales with the output's magnitude)

with fp32: atol = rtol = 1e-4; fp16 (compared with the float32 model): atol = 1e-2, rtol = 5e-2. Measured on the
project's models, fp32 differences are ~1e-6 (ONNX Runtime fuses and reorders float operations, so they are not
zero) and fp16 ones a few 1e-3 to 2e-2 of the output's scale; a broken export misses by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.export.errors import ExportError
from training.export.graphs import GraphDef, run_torch

CHECK_BATCHES = (1, 8)


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def bound(self, want: np.ndarray) -> float:
        """The largest allowed |onnx − torch| for an output whose PyTorch value is `want`."""
        return self.atol + self.rtol * (float(np.abs(want).max()) if want.size else 0.0)

    def as_dict(self) -> dict[str, float | str]:
        return {"atol": self.atol, "rtol": self.rtol, "rule": "max|onnx - torch| <= atol + rtol * max|torch|"}

    def __str__(self) -> str:
        return f"max|onnx - torch| <= {self.atol:g} + {self.rtol:g}*max|torch|"


TOLERANCES = {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(1e-2, 5e-2)}


@dataclass
class ParityReport:
    """Max absolute error of each output of one graph, over all checked inputs and batch sizes."""

    graph: str
    tolerance: Tolerance
    max_abs_error: dict[str, float] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)  # e.g. "face crops, batch 8"

    def as_dict(self) -> dict:
        return {"max_abs_error": self.max_abs_error, "cases": self.cases, "tolerance": self.tolerance.as_dict()}


def ort_session(path: str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _batch(x: np.ndarray, size: int, offset: int = 0) -> np.ndarray:
    """`size` rows of `x`, cycling through them when there are fewer."""
    return np.ascontiguousarray(x[(np.arange(size) + offset) % len(x)])


def check_parity(graph: GraphDef, onnx_path: str | Path, real: dict[str, np.ndarray], tolerance: Tolerance,
                 reference: GraphDef | None = None, seed: int = 0) -> ParityReport:
    """Run `onnx_path` and `reference` (default: `graph`, the traced module) on the same inputs; raise ExportError
    naming the graph, output, inputs, batch size and measured error when an output is outside `tolerance`.

    real: one array per graph input, rows = samples (e.g. "frames" (N, 3, S, S) face crops); an input absent from
    `real` (a teacher's privileged signal when none is given) is random in the "face crops" case too.
    """
    reference = reference or graph
    session = ort_session(onnx_path)
    rng = np.random.default_rng(seed)
    report = ParityReport(graph.name, tolerance, {name: 0.0 for name in graph.outputs})
    for label in ("face crops", "random"):
        for batch in CHECK_BATCHES:
            feed = {}
            for name, shape in graph.inputs.items():
                if label == "face crops" and name in real:
                    feed[name] = _batch(np.asarray(real[name], np.float32), batch, offset=batch)
                else:
                    feed[name] = rng.standard_normal((batch, *shape), dtype=np.float32)
            got = session.run(list(graph.outputs), feed)
            want = [t.numpy() for t in run_torch(reference, tuple(torch.from_numpy(feed[n]) for n in graph.inputs))]
            case = f"{label}, batch {batch}"
            report.cases.append(case)
            for name, g, w in zip(graph.outputs, got, want, strict=True):
                if g.shape != w.shape:
                    raise ExportError(f"graph {graph.name!r}, output {name!r} ({case}): ONNX Runtime gives shape "
                                      f"{g.shape}, PyTorch {w.shape}")
                error = float(np.abs(g - w).max()) if g.size else 0.0
                if not np.isfinite(g).all() or error > tolerance.bound(w):
                    raise ExportError(f"graph {graph.name!r}, output {name!r} ({case}): ONNX Runtime differs from "
                                      f"PyTorch by up to {error:.3g} (max abs error), beyond the tolerance "
                                      f"{tolerance} = {tolerance.bound(w):.3g}")
                report.max_abs_error[name] = max(report.max_abs_error[name], error)
    return report
