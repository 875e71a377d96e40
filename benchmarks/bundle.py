"""The bundled models as the benchmarks see them: the ONNX graphs the service runs, the PyTorch network they were
exported from (rebuilt from the training run), ONNX Runtime sessions opened as the service opens them, and int8
copies quantised the way `pkdot export --int8` does (cached, keyed by the float32 graph's sha256).

Imports torch: only call from inside a benchmark's `run`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import BenchContext
from pkdot_contract.manifest import Manifest, load_manifest

CALIBRATION_SAMPLES = 48  # training-part clips the int8 ranges are observed on


@dataclass
class BundledModel:
    folder: Path
    manifest: Manifest
    run_dir: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def graph_paths(self) -> dict[str, Path]:
        return {g: self.folder / spec.file for g, spec in self.manifest.graphs.items()}

    def input_shapes(self, graph: str, batch: int) -> dict[str, tuple[int, ...]]:
        return {t.name: (batch, *(int(d) for d in t.shape[1:])) for t in self.manifest.graphs[graph].inputs}

    def random_inputs(self, graph: str, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {k: rng.standard_normal(s, dtype=np.float32) for k, s in self.input_shapes(graph, batch).items()}


def bundled_models(ctx: BenchContext) -> list[BundledModel]:
    """Every model folder under models_dir whose training run is in runs_dir (students first, then teachers)."""
    out = []
    for manifest_path in sorted(ctx.models_dir.glob("*/manifest.json")):
        folder = manifest_path.parent
        manifest = load_manifest(folder, verify=True)
        run = str(manifest.provenance.get("run") or folder.name)
        out.append(BundledModel(folder, manifest, ctx.runs_dir / run))
    return sorted(out, key=lambda m: (m.manifest.role != "student", m.manifest.task, m.name))


def require_runs(models: list[BundledModel], data: bool = False) -> None:
    """Skip (benchmarks.common.Skipped) unless every model's training run (and, with `data`, its dataset and
    face-crop cache) is here: runs/ and data/ are not in the repository, `make models` writes them."""
    from benchmarks.common import Skipped

    if not models:
        raise Skipped("no bundled model folder (models/*/manifest.json)")
    for m in models:
        if not (m.run_dir / "config.json").is_file() or not (m.run_dir / "best.pt").is_file():
            raise Skipped(f"needs the training run of {m.name} at {m.run_dir} (config.json, best.pt) for the PyTorch "
                          "network; `make models` writes it")
        if data:
            cfg = json.loads((m.run_dir / "config.json").read_text()).get("data", {})
            for key in ("root", "cache"):
                if not cfg.get(key) or not Path(cfg[key]).exists():
                    raise Skipped(f"needs the dataset of {m.name} ({key} {cfg.get(key)!r}) for int8 calibration and "
                                  "its accuracy change; `make models` writes it")


def torch_graphs(model: BundledModel, window: int | None = None) -> dict:
    """{graph name: training.export.graphs.GraphDef}: the PyTorch modules the ONNX graphs were traced from."""
    from training.export.graphs import build_graphs
    from training.train import load_run

    _, net = load_run(model.run_dir)
    m = model.manifest
    privileged = None
    if m.role == "teacher":
        spec = next(t for t in m.graphs["model"].inputs if t.name == "privileged")
        privileged = tuple(int(d) for d in spec.shape[1:])
    graphs = build_graphs(net, task=m.task, role=m.role, size=m.preprocessing.crop.size,
                          window=window or m.preprocessing.window, privileged_shape=privileged)
    return {g.name: g for g in graphs}


def open_session(model: BundledModel, graph: str, path: Path, ctx: BenchContext):
    """An ONNX Runtime session with the service's own options (service.inference.runtime.open_graph)."""
    from service.inference.runtime import open_graph, requested_providers

    return open_graph(graph, path, model.manifest.graphs[graph], requested_providers(ctx.providers),
                      ctx.n_threads).session


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# -- int8 ---------------------------------------------------------------------------------------------------------


def _datasets(model: BundledModel):
    from training.data.build import build_datasets
    from training.train import _config_from_json

    cfg = _config_from_json(model.run_dir / "config.json")
    return build_datasets(cfg.data, cfg.task, privileged=model.manifest.role == "teacher")


PRIVILEGED_KEYS = ("privileged", "signal", "audio")
TARGET_KEYS = ("label", "target", "va")


def _arrays(dataset, limit: int | None = None) -> dict[str, np.ndarray]:
    """video (N, T, 3, S, S) float32, target, and privileged (N, ...) when the samples carry it."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    idx = np.linspace(0, len(dataset) - 1, n).round().astype(int) if n else []
    video, target, privileged = [], [], []
    for i in dict.fromkeys(int(i) for i in idx):
        s = dataset[i]
        video.append(np.asarray(s["video"], np.float32))
        target.append(np.asarray(next(s[k] for k in TARGET_KEYS if k in s)))
        key = next((k for k in PRIVILEGED_KEYS if k in s), None)
        if key is not None:
            privileged.append(np.asarray(s[key], np.float32))
    out = {"video": np.stack(video), "target": np.stack(target)}
    if privileged:
        out["privileged"] = np.stack(privileged)
    return out


def _run_graphs(sessions: dict, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of a model's graphs (sessions by graph name) on clips, as the service composes them."""
    video = data["video"]
    out: list[dict[str, np.ndarray]] = []
    for i in range(0, len(video), 16):
        v = video[i : i + 16]
        if "encoder" in sessions:
            b, t = v.shape[:2]
            emb = sessions["encoder"].run(["embedding"], {"frames": v.reshape(b * t, *v.shape[2:])})[0]
            s = sessions["head"]
            feed = {"embeddings": emb.reshape(b, t, -1)}
        else:
            s = sessions["model"]
            feed = {"video": v}
            if "privileged" in data:
                feed["privileged"] = data["privileged"][i : i + 16]
        names = [o.name for o in s.get_outputs()]
        out.append(dict(zip(names, s.run(names, feed), strict=True)))
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def _metrics(task: str, outputs: dict[str, np.ndarray], target: np.ndarray) -> dict:
    from training.metrics import task_metrics

    if task == "pain":
        return task_metrics(task, target, outputs["logits"].argmax(-1), outputs["logits"].shape[-1])
    return task_metrics(task, target, outputs["va"])


def int8_graphs(model: BundledModel, ctx: BenchContext) -> tuple[dict[str, Path], dict]:
    """int8 (QDQ) copies of the model's graphs and the accuracy change they bring, computed once and cached.

    Calibration: up to CALIBRATION_SAMPLES clips of the run's training part (the head sees the float32 encoder's
    embeddings of them, a teacher also its privileged inputs). Accuracy: the task's primary metric of fp32 and
    int8 on the run's validation and test parts, and how far the int8 outputs move from the fp32 ones.
    """
    from training.export.quantize import QUANTIZED_OPS, quantize_graph
    from training.metrics import PRIMARY_METRIC

    src = model.graph_paths
    recipe = hashlib.sha256(" ".join(QUANTIZED_OPS).encode()).hexdigest()[:8]  # a new recipe, new int8 graphs
    key = "-".join([*(_sha(p) for _, p in sorted(src.items())), recipe])
    folder = ctx.cache_dir / "int8" / f"{model.name}-{key}"
    report_path = folder / "report.json"
    paths = {g: folder / f"{g}.onnx" for g in src}
    if report_path.is_file() and all(p.is_file() for p in paths.values()):
        return paths, json.loads(report_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    data = _datasets(model)
    calib = _arrays(data.train, CALIBRATION_SAMPLES)
    fp32 = {g: open_session(model, g, p, BenchContext(providers="cpu", threads=ctx.threads)) for g, p in src.items()}
    video = calib["video"]
    for g, p in src.items():
        if g == "encoder":
            inputs = {"frames": video.reshape(-1, *video.shape[2:])}  # (N·T, 3, S, S)
        elif g == "head":
            emb = fp32["encoder"].run(["embedding"], {"frames": video.reshape(-1, *video.shape[2:])})[0]
            inputs = {"embeddings": emb.reshape(len(video), video.shape[1], -1)}  # (N, T, D)
        else:
            inputs = {"video": video, **({"privileged": calib["privileged"]} if "privileged" in calib else {})}
        quantize_graph(p, paths[g], inputs)
    int8 = {g: open_session(model, g, p, BenchContext(providers="cpu", threads=ctx.threads)) for g, p in paths.items()}
    task, metric = model.manifest.task, PRIMARY_METRIC[model.manifest.task]
    report: dict = {"metric": metric, "calibration_clips": int(len(video)), "quantized_ops": QUANTIZED_OPS,
                    "method": "onnxruntime quantize_static (QDQ, per-channel int8 weights, uint8 activations, "
                              "MinMax), as pkdot export --int8"}
    for part in ("val", "test"):
        arrays = _arrays(getattr(data, part))
        a, b = _run_graphs(fp32, arrays), _run_graphs(int8, arrays)
        ma, mb = _metrics(task, a, arrays["target"]), _metrics(task, b, arrays["target"])
        main = "logits" if task == "pain" else "va"
        entry = {"samples": int(len(arrays["video"])), "fp32": ma[metric], "int8": mb[metric],
                 "change_points": 100.0 * (mb[metric] - ma[metric]),
                 "max_abs_output_change": float(np.abs(a[main] - b[main]).max())}
        if task == "pain":
            entry["same_class"] = float((a["logits"].argmax(-1) == b["logits"].argmax(-1)).mean())
        report[part] = entry
    report["bytes"] = {g: {"fp32": src[g].stat().st_size, "int8": paths[g].stat().st_size} for g in src}
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    return paths, report


def ort_profile(path: Path, feed: dict[str, np.ndarray], ctx: BenchContext, calls: int = 100) -> dict:
    """ONNX Runtime's own profile of `calls` runs (service session options): kernel time and nodes per call, by
    operator type, of the graph as ONNX Runtime optimised it."""
    import collections
    import json as _json
    import tempfile

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = ctx.n_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=ctx.ort_providers())
        for _ in range(calls):
            session.run(None, feed)
        events = _json.loads(Path(session.end_profiling()).read_text())
    time_us: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    conv_us: collections.Counter = collections.Counter()
    conv_nodes: collections.Counter = collections.Counter()
    named = conv_kinds_by_name(path)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            time_us[op] += e["dur"]
            nodes[op] += 1
            if op == "QLinearConv":  # named after the Conv it replaced: "<conv>_token_<n>_kernel_time"
                kind = named.get(re.sub(r"(_token_\d+)?_kernel_time$", "", e["name"]))
            else:
                kind = _conv_kind(op, e["args"].get("input_type_shape", []))
            if kind:
                conv_us[kind] += e["dur"]
                conv_nodes[kind] += 1
    total = sum(time_us.values())
    return {"calls": calls, "kernel_ms_per_call": round(total / calls / 1e3, 4),
            "nodes_per_call": round(sum(nodes.values()) / calls, 1),
            "by_op": {op: {"ms_per_call": round(t / calls / 1e3, 4), "nodes": round(nodes[op] / calls, 1)}
                      for op, t in time_us.most_common()},
            "convolutions": {k: {"ms_per_call": round(t / calls / 1e3, 4), "nodes": round(conv_nodes[k] / calls, 1)}
                             for k, t in conv_us.most_common()}}


def _weight_kind(w: list[int]) -> str | None:
    """depthwise (C, 1, k, k), pointwise (O, I, 1, 1) or full, from a 2D convolution's weight shape."""
    if len(w) != 4:
        return None
    if w[1] == 1 and w[2] > 1:
        return "depthwise"
    return "pointwise" if w[2] == w[3] == 1 else "full"


def _conv_kind(op: str, shapes: list[dict]) -> str | None:
    """The kind of a float convolution from its weight shape in a profile (None for other nodes; QLinearConv's
    prepacked weights do not show there, see conv_kinds_by_name)."""
    if op not in ("Conv", "FusedConv") or len(shapes) < 2:
        return None
    return _weight_kind(next(iter(shapes[1].values()), []))


def conv_kinds_by_name(path: Path) -> dict[str, str]:
    """{Conv node name: kind} of a graph file, following a QDQ graph's weights through their DequantizeLinear; ONNX
    Runtime names the QLinearConv that replaces a quantised Conv after it."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    kinds = {}
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = node.input[1]
        while w not in shapes and w in producer and producer[w].input:
            w = producer[w].input[0]
        kind = _weight_kind(shapes.get(w, []))
        if kind:
            kinds[node.name] = kind
    return kinds
