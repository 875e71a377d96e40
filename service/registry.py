"""Loading model folders into ONNX Runtime sessions with one micro-batcher per graph, and finding them again.

A folder is loaded when its manifest is valid, its files match their sha256, its graphs open and match what the
manifest declares, and a warm-up over every batch size the batcher uses runs. Anything else is a
`ModelLoadError` naming the folder: it stops start-up, or with `skip_broken_models` the folder is left out and
listed in /readyz.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pkdot_contract.manifest import Manifest, ModelFolderError, load_manifest
from pkdot_contract.preprocessing.crop import CropSpec
from pkdot_contract.tasks import GRAPH_OUTPUTS, TASKS
from service.batching import MicroBatcher
from service.core.config import Settings
from service.errors import ModelLoadError, NotFound
from service.metrics import Metrics
from service.privileged import example_input
from service.runtime import GPU_PROVIDERS, GraphSession, open_graph, requested_providers

log = logging.getLogger(__name__)



@dataclass
class LoadedModel:
    folder: Path
    manifest: Manifest
    graphs: dict[str, GraphSession]
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


def load_model(folder: Path, settings: Settings, manifest: Manifest | None = None) -> LoadedModel:
    """Validate, verify and open one folder (blocking). Raises ModelLoadError naming the folder."""
    t0 = time.perf_counter()
    try:
        manifest = load_manifest(folder, verify=True)
        _check_contract(manifest)
        providers = requested_providers(settings.providers)
        graphs = {name: open_graph(name, folder / g.file, g, providers, settings.ort_intra_op_threads)
                  for name, g in manifest.graphs.items()}
        model = LoadedModel(folder, manifest, graphs)
        if settings.warmup:
            warm_up(model, batch_sizes(settings.max_batch_size))
    except (ModelFolderError, ModelLoadError) as exc:
        raise ModelLoadError(str(exc) if str(folder) in str(exc) else f"{folder}: {exc}") from None
    except Exception as exc:  # ONNX Runtime refusing a graph, a bad shape in the contract check ...
        raise ModelLoadError(f"{folder}: {type(exc).__name__}: {exc}") from None
    model.load_seconds = time.perf_counter() - t0
    return model


class ModelRegistry:
    """Every loaded model, the default student per task, and the teachers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.skipped: list[tuple[str, str]] = []  # (folder, error) of broken folders left out
        self.defaults: dict[str, str] = {}

    def folders(self) -> list[Path]:
        root = self.settings.models_dir
        if not root.is_dir():
            return []
        found = sorted(p.parent for p in root.glob("*/manifest.json"))
        if self.settings.models:
            found = [p for p in found if p.name in self.settings.models]
        return found

    def load(self) -> None:
        """Load every folder (blocking; call it from a worker thread). Raises ModelLoadError unless skipping."""
        s = self.settings
        for folder in self.folders():
            try:
                role = load_manifest(folder, verify=False).role
                if role == "teacher" and s.teacher == "off":
                    log.info("teacher not loaded (teacher=off)", extra={"folder": str(folder)})
                    continue
                model = load_model(folder, s)
                if model.name in self.models:
                    raise ModelLoadError(f"{folder}: a model named {model.name!r} is already loaded from "
                                         f"{self.models[model.name].folder}")
            except (ModelFolderError, ModelLoadError) as exc:
                message = str(exc)
                if not s.skip_broken_models:
                    log.error("model folder refused", extra={"folder": str(folder), "error": message})
                    raise ModelLoadError(message) from None
                log.warning("model folder skipped", extra={"folder": str(folder), "error": message})
                self.skipped.append((str(folder), message))
                continue
            self.models[model.name] = model
            log.info("model loaded", extra={"model": model.name, "version": model.manifest.version,
                                            "task": model.task, "role": model.role, "provider": model.provider,
                                            "load_ms": round(model.load_seconds * 1000, 1)})
        self._choose_defaults()
        if s.teacher == "on" and not any(m.role == "teacher" for m in self.models.values()):
            raise ModelLoadError(f"teacher=on but no teacher model folder was loaded from {s.models_dir}")

    def _choose_defaults(self) -> None:
        for task in TASKS:
            students = [m for m in self.models.values() if m.task == task and m.role == "student"]
            wanted = self.settings.default_models.get(task)
            if wanted is not None:
                if wanted not in {m.name for m in students}:
                    raise ModelLoadError(f"default model {wanted!r} for task {task} is not a loaded {task} student "
                                         f"(loaded: {sorted(m.name for m in students) or 'none'})")
                self.defaults[task] = wanted
            elif students:  # streaming students first, then by name
                self.defaults[task] = sorted(students, key=lambda m: (not m.streaming, m.name))[0].name

    def start(self, executor: Executor, metrics: Metrics) -> None:
        """Start one micro-batcher per graph (needs the running event loop)."""
        s = self.settings
        for model in self.models.values():
            for graph, session in model.graphs.items():
                batcher = MicroBatcher(model.name, graph, session.run, executor, metrics, s.max_batch_size,
                                       s.max_batch_delay_ms / 1000.0, s.max_queue_rows)
                batcher.start()
                model.batchers[graph] = batcher

    async def close(self) -> None:
        for model in self.models.values():
            for batcher in model.batchers.values():
                await batcher.close()

    # -- lookup ------------------------------------------------------------------------------------------------------

    def student(self, task: str, name: str | None = None) -> LoadedModel:
        if task not in TASKS:
            raise NotFound(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if name is None:
            if task not in self.defaults:
                raise NotFound(f"no {task} model is loaded; put an exported {task} student under "
                               f"{self.settings.models_dir} and restart")
            return self.models[self.defaults[task]]
        model = self.models.get(name)
        if model is None or model.task != task or model.role != "student":
            names = sorted(m.name for m in self.models.values() if m.task == task and m.role == "student")
            raise NotFound(f"unknown {task} model {name!r}; loaded: {', '.join(names) or 'none'}")
        return model

    def teacher(self, task: str) -> LoadedModel:
        if task not in TASKS:
            raise NotFound(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        for model in self.models.values():
            if model.task == task and model.role == "teacher":
                return model
        if self.settings.teacher == "off":
            raise NotFound("the teacher endpoint is disabled (teacher=off): start the service with --teacher auto "
                           f"(PKDOT_TEACHER=auto) and a {task} teacher folder under {self.settings.models_dir}")
        raise NotFound(f"no {task} teacher is loaded: export one (role 'teacher', task '{task}') into "
                       f"{self.settings.models_dir} and restart with --teacher auto or on (PKDOT_TEACHER)")
