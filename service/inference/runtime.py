"""ONNX Runtime sessions: provider selection (TensorRT > CUDA > CPU) and the provider each session really got.

ONNX Runtime falls back to CPU without raising when a GPU provider cannot start (missing CUDA libraries, no
device). The service never reports what it asked for: `GraphSession.provider` is read back from the session.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pkdot_contract.manifest import GraphSpec

log = logging.getLogger(__name__)

if os.environ.get("ORT_DISABLE_TELEMETRY") == "1" and hasattr(ort, "disable_telemetry_events"):
    ort.disable_telemetry_events()  # in case onnxruntime was imported before `service` set the variable

PROVIDER_NAMES = {
    "TensorrtExecutionProvider": "TensorRT",
    "CUDAExecutionProvider": "CUDA",
    "CPUExecutionProvider": "CPU",
}
GPU_PROVIDERS = {"TensorRT", "CUDA", "Triton:GPU"}  # Triton: the instance group's kind
PREFERENCE = {
    "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def requested_providers(choice: str) -> list[str]:
    """The providers to ask for, in preference order, limited to those this onnxruntime build has."""
    available = set(ort.get_available_providers())
    wanted = [p for p in PREFERENCE[choice] if p in available]
    if choice in ("cuda", "tensorrt") and PREFERENCE[choice][0] not in available:
        log.warning("provider %s requested but this onnxruntime build has only %s", choice, sorted(available))
    return wanted or ["CPUExecutionProvider"]


@dataclass
class GraphSession:
    """One ONNX graph: its session, declared inputs/outputs, and the provider it really runs on."""

    name: str
    session: ort.InferenceSession
    input_names: list[str]
    output_names: list[str]
    input_dtypes: dict[str, type]

    @property
    def providers(self) -> list[str]:
        return [PROVIDER_NAMES.get(p, p) for p in self.session.get_providers()]

    @property
    def provider(self) -> str:
        return self.providers[0]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Blocking call; ONNX Runtime releases the GIL, so run it in a worker thread."""
        feed = {k: np.ascontiguousarray(v, dtype=self.input_dtypes[k]) for k, v in inputs.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))


def open_graph(name: str, path: Path, spec: GraphSpec, providers: list[str], intra_op_threads: int) -> GraphSession:
    """Create the session and check the graph against what the manifest declares about it."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait next to MediaPipe
    options.enable_mem_pattern = True
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    if providers[0] != "CPUExecutionProvider" and session.get_providers()[0] != providers[0]:
        log.warning("graph %s: %s was asked for but could not start (no device or libraries); it runs on %s",
                    name, providers[0], session.get_providers()[0])
    real_inputs = {i.name: i for i in session.get_inputs()}
    real_outputs = [o.name for o in session.get_outputs()]
    declared_in = [t.name for t in spec.inputs]
    declared_out = [t.name for t in spec.outputs]
    if set(declared_in) != set(real_inputs):
        raise ValueError(f"graph {name!r}: the manifest declares inputs {declared_in}, the ONNX file has "
                         f"{sorted(real_inputs)}")
    missing = [o for o in declared_out if o not in real_outputs]
    if missing:
        raise ValueError(f"graph {name!r}: outputs {missing} are declared in the manifest but not in the ONNX file")
    dtypes = {n: NUMPY_DTYPES.get(i.type, np.float32) for n, i in real_inputs.items()}
    return GraphSession(name, session, declared_in, declared_out, dtypes)
