"""One loaded model folder: its manifest, ONNX Runtime sessions and batchers, and how a folder is loaded.

A folder is loaded when its manifest is valid, its files match their sha256, its graphs open and match what the
manifest declares (the graph names and inputs the service relies on), and a warm-up over every batch size the
batcher uses runs. Anything else is a `ModelLoadError` naming the folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pkdot_contract.manifest import Manifest, ModelFolderError, load_manifest
from pkdot_contract.preprocessing.crop import CropSpec
from pkdot_contract.tasks import GRAPH_OUTPUTS
from service.core.config import Settings
from service.core.errors import ModelLoadError
from service.inference.batching import MicroBatcher
from service.inference.privileged import example_input
from service.inference.runtime import GPU_PROVIDERS, GraphSession, open_graph, requested_providers
from service.inference.triton import TritonGraph, open_triton_graphs

Graph = GraphSession | TritonGraph  # run(inputs) -> outputs, provider, providers


@dataclass
class LoadedModel:
    folder: Path
    manifest: Manifest
    graphs: dict[str, Graph]
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    load_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def role(self) -> str:
        return self.manifest.role

    @property
    def streaming(self) -> bool:
        return self.manifest.streaming

    @property
    def window(self) -> int:
        return self.manifest.preprocessing.window

    @property
    def crop(self) -> CropSpec:
        return CropSpec.from_dict(self.manifest.preprocessing.crop.model_dump())

    @property
    def provider(self) -> str:
        """The provider of the graph that does most of the work (the encoder when streaming)."""
        main = "encoder" if self.streaming else "model"
        return self.graphs[main].provider

    @property
    def providers(self) -> dict[str, list[str]]:
        return {name: g.providers for name, g in self.graphs.items()}

    @property
    def on_gpu(self) -> bool:
        return all(g.provider in GPU_PROVIDERS for g in self.graphs.values())

    async def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return await self.batchers[graph].submit(inputs)


def _check_contract(m: Manifest) -> None:
    """The graph names the service relies on (DESIGN.md section 4, graph contract)."""
    def io(graph: str) -> tuple[set[str], set[str]]:
        g = m.graphs[graph]
        return {t.name for t in g.inputs}, {t.name for t in g.outputs}

    outputs = GRAPH_OUTPUTS[m.task]
    labels = m.outputs.labels or []
    if m.task == "pain" and not 2 <= len(labels) <= 5:
        raise ModelLoadError(f"a pain model has 2 to 5 levels (BL1 ... PA4); the manifest lists {len(labels)}")
    if m.role == "student" and m.streaming:
        enc_in, enc_out = io("encoder")
        head_in, head_out = io("head")
        if enc_in != {"frames"} or "embedding" not in enc_out:
            raise ModelLoadError("the encoder graph must take 'frames' and give 'embedding'")
        if head_in != {"embeddings"}:
            raise ModelLoadError("the head graph must take 'embeddings'")
        if not head_out & set(outputs):
            raise ModelLoadError(f"the head graph of a {m.task} model must give {' or '.join(outputs)}")
        return
    graph_in, graph_out = io("model")
    wanted = {"video", "privileged"} if m.role == "teacher" else {"video"}
    if graph_in != wanted:
        raise ModelLoadError(f"the {m.role} graph must take {sorted(wanted)}, it takes {sorted(graph_in)}")
    if not graph_out & set(outputs):
        raise ModelLoadError(f"the graph of a {m.task} model must give {' or '.join(outputs)}")


def _warmup_inputs(model: LoadedModel, batch: int, embedding_dim: int | None) -> dict[str, dict[str, np.ndarray]]:
    """Zero inputs of every graph for one batch size, in the order the graphs run."""
    m, s, t = model.manifest, model.crop.size, model.window
    if model.streaming:
        frames = np.zeros((batch, 3, s, s), np.float32)  # (B, 3, S, S)
        out = {"encoder": {"frames": frames}}
        if embedding_dim is not None:
            out["head"] = {"embeddings": np.zeros((batch, t, embedding_dim), np.float32)}  # (B, T, D)
        return out
    feed = {"video": np.zeros((batch, t, 3, s, s), np.float32)}  # (B, T, 3, S, S)
    if m.role == "teacher":
        spec = next(i for i in m.graphs["model"].inputs if i.name == "privileged")
        x = example_input(m.preprocessing.privileged, spec)
        feed["privileged"] = np.repeat(x[None], batch, axis=0)
    return {"model": feed}


def warm_up(model: LoadedModel, batch_sizes: Iterable[int]) -> None:
    """Run every graph once per batch size (blocking), and check that it answers with the declared outputs."""
    for b in batch_sizes:
        dim = None
        if model.streaming:
            dim = int(model.graphs["encoder"].run(_warmup_inputs(model, 1, None)["encoder"])["embedding"].shape[-1])
        for graph, feed in _warmup_inputs(model, b, dim).items():
            try:
                out = model.graphs[graph].run(feed)
            except Exception as exc:
                shapes = {k: list(v.shape) for k, v in feed.items()}
                raise ModelLoadError(f"graph {graph!r} failed on inputs {shapes}: {exc}") from None
            rows = {k: v.shape[0] for k, v in out.items() if v.ndim >= 1}
            if any(r != b for r in rows.values()):
                raise ModelLoadError(f"graph {graph!r} answered rows {rows} for a batch of {b}")


def batch_sizes(max_batch: int) -> list[int]:
    """The batch sizes the warm-up runs: powers of two up to max_batch, and max_batch."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch]


def open_graphs(folder: Path, manifest: Manifest, settings: Settings) -> dict[str, Graph]:
    """Every graph of the folder: ONNX Runtime sessions here, or the same graphs on a Triton server."""
    if settings.backend == "triton":
        return open_triton_graphs(manifest, settings)
    providers = requested_providers(settings.providers)
    return {name: open_graph(name, folder / g.file, g, providers, settings.ort_intra_op_threads)
            for name, g in manifest.graphs.items()}


def load_model(folder: Path, settings: Settings, manifest: Manifest | None = None) -> LoadedModel:
    """Validate, verify and open one folder (blocking). Raises ModelLoadError naming the folder."""
    t0 = time.perf_counter()
    try:
        manifest = load_manifest(folder, verify=True)
        _check_contract(manifest)
        model = LoadedModel(folder, manifest, open_graphs(folder, manifest, settings))
        if settings.warmup:
            warm_up(model, batch_sizes(settings.max_batch_size))
    except (ModelFolderError, ModelLoadError) as exc:
        raise ModelLoadError(str(exc) if str(folder) in str(exc) else f"{folder}: {exc}") from None
    except Exception as exc:  # ONNX Runtime refusing a graph, a bad shape in the contract check ...
        raise ModelLoadError(f"{folder}: {type(exc).__name__}: {exc}") from None
    model.load_seconds = time.perf_counter() - t0
    return model
