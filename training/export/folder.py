"""Checking a model folder against its manifest: the files' sha256, each ONNX graph's interface, Triton configs.

`verify_model_folder` is what export runs last and what the bundled-model tests run: a folder passes only when
every file matches its recorded sha256 (`pkdot_contract.manifest.load_manifest`), no unlisted file sits beside them, and
each graph's ONNX inputs/outputs and `config.pbtxt` agree with the manifest (names, order, rank, fixed dims, dtypes).
Any problem is a `ModelFolderError` that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from pkdot_contract.manifest import MANIFEST, Manifest, ModelFolderError, TensorSpec, load_manifest
from training.export.triton import PLATFORM, TRITON_DTYPES, read_triton_config

ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool"}


def graph_file(graph: str) -> str:
    return f"{graph}/1/model.onnx"


def onnx_interface(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an onnx.ModelProto as TensorSpecs (symbolic dims by name; unknown dims as "?")."""
    initializers = {i.name for i in model.graph.initializer}

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
        dtype = ONNX_DTYPES.get(t.elem_type, f"onnx type {t.elem_type}")
        return TensorSpec.model_construct(name=v.name, shape=dims, dtype=dtype)

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


def _compare(where: str, kind: str, found: list[TensorSpec], expected: list[TensorSpec]) -> None:
    names = [t.name for t in found]
    if names != [t.name for t in expected]:
        raise ModelFolderError(f"{where}: {kind} are {names}, the manifest says {[t.name for t in expected]}")
    for f, e in zip(found, expected, strict=True):
        if len(f.shape) != len(e.shape):
            raise ModelFolderError(f"{where}: {kind[:-1]} {f.name!r} has rank {len(f.shape)} {f.shape}, the manifest "
                                   f"says {e.shape}")
        for fd, ed in zip(f.shape, e.shape, strict=True):
            if isinstance(ed, int) and fd != ed or isinstance(ed, str) and not isinstance(fd, str):
                raise ModelFolderError(f"{where}: {kind[:-1]} {f.name!r} has shape {f.shape}, the manifest says "
                                       f"{e.shape}")
        if f.dtype != e.dtype:
            raise ModelFolderError(f"{where}: {kind[:-1]} {f.name!r} is {f.dtype}, the manifest says {e.dtype}")


def _check_triton(folder: Path, name: str, manifest: Manifest) -> None:
    rel = f"{name}/config.pbtxt"
    if rel not in manifest.files:
        raise ModelFolderError(f"{folder}: {rel} is missing (each graph is a Triton model with its config)")
    try:
        config = read_triton_config((folder / rel).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFolderError(f"{folder}: {rel} is not a readable Triton config: {exc}") from None
    graph = manifest.graphs[name]
    if config.get("name") != name or config.get("platform") != PLATFORM:
        raise ModelFolderError(f"{folder}: {rel} must have name \"{name}\" and platform \"{PLATFORM}\"")
    if not isinstance(config.get("max_batch_size"), int) or config["max_batch_size"] < 1:
        raise ModelFolderError(f"{folder}: {rel} needs max_batch_size >= 1 (the graphs have a batch axis)")
    for kind, specs in (("input", graph.inputs), ("output", graph.outputs)):
        entries = config.get(kind, [])
        found = [(e.get("name"), e.get("data_type"), e.get("dims")) for e in entries]
        expected = [(t.name, TRITON_DTYPES[t.dtype], list(t.shape[1:])) for t in specs]
        if found != expected:
            raise ModelFolderError(f"{folder}: {rel} {kind}s {found} do not match the manifest {expected}")


def verify_model_folder(folder: str | os.PathLike) -> Manifest:
    """Load and check a model folder; returns its manifest or raises ModelFolderError naming the bad file."""
    import onnx

    folder = Path(folder)
    manifest = load_manifest(folder, verify=True)  # schema + sha256 of every listed file
    listed = set(manifest.files) | {MANIFEST}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel not in listed and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            raise ModelFolderError(f"{folder}: {rel} is not listed in the manifest (files were added after export)")
    for name, graph in manifest.graphs.items():
        if graph.file != graph_file(name):
            raise ModelFolderError(f"{folder}: graph {name!r} must live in {graph_file(name)} (Triton layout), "
                                   f"not {graph.file}")
        try:
            model = onnx.load(str(folder / graph.file))
        except Exception as exc:  # protobuf raises several types for a damaged file
            raise ModelFolderError(f"{folder}: {graph.file} is not a readable ONNX model: {exc}") from None
        inputs, outputs = onnx_interface(model)
        _compare(f"{folder}: {graph.file}", "inputs", inputs, graph.inputs)
        _compare(f"{folder}: {graph.file}", "outputs", outputs, graph.outputs)
        opsets = {o.domain: o.version for o in model.opset_import}
        if opsets.get("", opsets.get("ai.onnx")) != manifest.opset:
            raise ModelFolderError(f"{folder}: {graph.file} has opset {opsets.get('')}, the manifest says "
                                   f"{manifest.opset}")
        _check_triton(folder, name, manifest)
    return manifest
