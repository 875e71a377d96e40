"""A real Triton Inference Server for the Triton backend's tests, serving one model folder's graphs.

    python -m tests.service.tritonserve MODEL_FOLDER GRPC_PORT HTTP_PORT METRICS_PORT [--bad]

The server is NVIDIA's `tritonserver` binary that the `nvidia-pytriton` wheel bundles (no Docker, no GPU). That
build carries only Triton's Python backend, not its ONNX Runtime backend, so each graph is bound as a Python model
that runs the folder's `<graph>/1/model.onnx` in ONNX Runtime. What Triton exposes — model name, tensor names,
data types, dims, max_batch_size — is read from the folder's `<graph>/config.pbtxt`, the file a real deployment
points Triton at: that is the contract the service checks at start-up. `--bad` also serves `<graph>-bad` with its
first input's last dim changed, to see the check refuse it. Prints "ready" once every model is loaded; stops
on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import numpy as np

from training.export.triton import read_triton_config

NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64, "TYPE_INT32": np.int32}


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _bind(triton, graph_dir: Path, name: str, bad: bool = False) -> None:
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import ModelConfig, Tensor

    config = read_triton_config((graph_dir / "config.pbtxt").read_text())
    session = ort.InferenceSession(str(graph_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = [Tensor(name=t["name"], dtype=NUMPY[t["data_type"]], shape=tuple(_as_list(t["dims"])))
              for t in _as_list(config["input"])]
    outputs = [Tensor(name=t["name"], dtype=NUMPY[t["data_type"]], shape=tuple(_as_list(t["dims"])))
               for t in _as_list(config["output"])]
    if bad:
        first = inputs[0]
        inputs[0] = Tensor(name=first.name, dtype=first.dtype, shape=(*first.shape[:-1], first.shape[-1] + 1))
    names = [t.name for t in outputs]

    @batch
    def infer(**feed: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feed), strict=True))

    triton.bind(model_name=name, infer_func=infer, inputs=inputs, outputs=outputs,
                config=ModelConfig(max_batch_size=int(config["max_batch_size"])), strict=True)


def main(argv: list[str]) -> int:
    folder, grpc_port, http_port, metrics_port = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    # The bundled Python-backend stub links libpython3.11.so: take this interpreter's, which matches the standard
    # library the stub then imports (a distribution's older libpython lacks what this one's stdlib calls).
    os.environ["LD_LIBRARY_PATH"] = ":".join(filter(None, [sysconfig.get_config_var("LIBDIR"),
                                                           os.environ.get("LD_LIBRARY_PATH")]))
    import logging

    # pytriton's own progress (server start, model loading) to stderr: what the test shows if start-up stalls
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    print("starting tritonserver", flush=True)
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_verbose=0)
    with Triton(config=config) as triton:
        graphs = sorted(p.parent for p in folder.glob("*/config.pbtxt"))
        for graph_dir in graphs:
            _bind(triton, graph_dir, graph_dir.name)
            print(f"bound {graph_dir.name}", flush=True)
        if "--bad" in argv:
            _bind(triton, graphs[0], f"{graphs[0].name}-bad", bad=True)
        triton.run()
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes our stdin (or terminates us)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
