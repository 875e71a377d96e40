"""Graphs on a Triton Inference Server (`backend = "triton"`): the service still decodes, finds and tracks the face,
crops and smooths; only each graph's input tensors go to Triton over gRPC (`tritonclient`), so a GPU pool can sit
behind many CPU front ends.

A `TritonGraph` has the interface of `runtime.GraphSession` (`run(inputs) -> outputs`, `provider`), so the
batchers, the warm-up and the predictors do not know where a graph runs. At load time every graph is checked
against the server: the model `triton_model_name` names (default: the graph's name, as `config.pbtxt` in the
model folder says) must be ready and take and give the tensors the manifest declares, with the same shapes (the batch
axis left out, as Triton does when `max_batch_size` > 0).
"""

from __future__ import annotations

import numpy as np

from pkdot_contract.manifest import GraphSpec, Manifest
from service.core.config import Settings
from service.core.errors import ModelLoadError

TRITON_DTYPES = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "int8": "INT8",
                 "uint8": "UINT8", "bool": "BOOL"}
NUMPY_DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "INT8": np.int8,
                "UINT8": np.uint8, "BOOL": np.bool_}


def _grpc():
    """`tritonclient.grpc` and its exception class, or ModelLoadError saying which extra installs them."""
    try:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
    except ImportError:
        raise ModelLoadError("backend triton needs the tritonclient package: "
                             "pip install -c constraints.txt -e '.[serve,cluster]'") from None
    return grpcclient, InferenceServerException


class TritonGraph:
    """One graph served by Triton: blocking `run` (call it from a worker thread, as the batchers do)."""

    def __init__(self, name: str, client, model: str, spec: GraphSpec, timeout_s: float, kind: str) -> None:
        self.name, self.client, self.model, self.timeout_s = name, client, model, timeout_s
        self.input_names = [t.name for t in spec.inputs]
        self.output_names = [t.name for t in spec.outputs]
        self.input_dtypes = {t.name: NUMPY_DTYPES[TRITON_DTYPES[t.dtype]] for t in spec.inputs}
        self.kind = kind  # the instance group's kind: GPU, CPU or AUTO

    @property
    def providers(self) -> list[str]:
        return [self.provider]

    @property
    def provider(self) -> str:
        return f"Triton:{self.kind}"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        grpc, _ = _grpc()
        requests = []
        for name in self.input_names:
            x = np.ascontiguousarray(inputs[name], dtype=self.input_dtypes[name])
            r = grpc.InferInput(name, list(x.shape), TRITON_DTYPES[np.dtype(x.dtype).name])
            r.set_data_from_numpy(x)
            requests.append(r)
        wanted = [grpc.InferRequestedOutput(n) for n in self.output_names]
        result = self.client.infer(self.model, requests, outputs=wanted, client_timeout=self.timeout_s)
        return {n: result.as_numpy(n) for n in self.output_names}


def _check(graph: str, model: str, spec: GraphSpec, metadata, max_batch_size: int) -> None:
    """The server's tensors against the manifest's: names, data types, shapes (without the batch axis)."""
    batch_axis = 1 if max_batch_size > 0 else 0
    for kind, declared, served in (("input", spec.inputs, metadata.inputs), ("output", spec.outputs, metadata.outputs)):
        have = {t.name: (t.datatype, [int(d) for d in t.shape][batch_axis:]) for t in served}
        for t in declared:
            want = (TRITON_DTYPES[t.dtype], [-1 if isinstance(d, str) else d for d in t.shape[1:]])
            if t.name not in have:
                raise ModelLoadError(f"graph {graph!r}: Triton model {model!r} has no {kind} {t.name!r} "
                                     f"(it has {sorted(have)})")
            dtype, dims = have[t.name]
            if dtype != want[0] or len(dims) != len(want[1]) or any(
                    w != -1 and d != -1 and w != d for w, d in zip(want[1], dims, strict=True)):
                raise ModelLoadError(f"graph {graph!r}: Triton model {model!r} {kind} {t.name!r} is {dtype} "
                                     f"{dims}; the manifest declares {want[0]} {want[1]}")


def open_triton_graphs(manifest: Manifest, settings: Settings) -> dict[str, TritonGraph]:
    """Connect to the server and check every graph of `manifest` there (blocking). Raises ModelLoadError."""
    grpc, InferenceServerException = _grpc()
    url = settings.triton_url
    try:
        client = grpc.InferenceServerClient(url)
        if not client.is_server_ready(client_timeout=settings.triton_timeout_s):
            raise ModelLoadError(f"the Triton server at {url} is not ready")
    except InferenceServerException as exc:
        raise ModelLoadError(f"cannot reach the Triton server at {url} (gRPC): {exc.message()}") from None
    graphs = {}
    for name, spec in manifest.graphs.items():
        model = settings.triton_model_name.format(graph=name, model=manifest.name)
        try:
            if not client.is_model_ready(model, client_timeout=settings.triton_timeout_s):
                raise ModelLoadError(f"graph {name!r}: Triton model {model!r} is not ready on {url}")
            metadata = client.get_model_metadata(model, client_timeout=settings.triton_timeout_s)
            config = client.get_model_config(model, client_timeout=settings.triton_timeout_s).config
        except InferenceServerException as exc:
            raise ModelLoadError(f"graph {name!r}: Triton model {model!r} on {url}: {exc.message()}") from None
        _check(name, model, spec, metadata, config.max_batch_size)
        kinds = {g.kind for g in config.instance_group}
        kind = "GPU" if kinds == {1} else "CPU" if kinds == {2} else "AUTO"  # KIND_GPU = 1, KIND_CPU = 2
        graphs[name] = TritonGraph(name, client, model, spec, settings.triton_timeout_s, kind)
    return graphs
