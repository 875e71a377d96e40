"""`export_model`: a trained model → a checked model folder (DESIGN.md §4, "Model folder").

    models/<name>/<graph>/1/model.onnx      one ONNX graph per part (training.export.graphs)
    models/<name>/<graph>/config.pbtxt      its Triton config (training.export.triton)
    models/<name>/MODEL_CARD.md             for people (training.export.card)
    models/<name>/manifest.json             for programs (pkdot_contract.manifest.Manifest), sha256 of every file

Export is a checked step. Each graph passes the ONNX checker and matches PyTorch in ONNX Runtime on real face
crops and random inputs at batch sizes 1 and 8 (training.export.parity); an int8 export must also stay within
`max_int8_drop` points of the float32 model's validation metric. Any failure raises ExportError with the measured
numbers. The folder is assembled beside its destination and moved into place only once everything has passed, so a
failed export never leaves a half-written folder (nor replaces a good one).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from pydantic import ValidationError

from pkdot_contract.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    Manifest,
    ModelFolderError,
    Outputs,
    Preprocessing,
    folder_files,
)
from pkdot_contract.preprocessing.crop import CropSpec, to_model_input
from training.export.card import default_licence, model_card
from training.export.errors import ExportError
from training.export.evaluate import ValidationData, evaluate_graphs, primary_metric
from training.export.folder import graph_file, verify_model_folder
from training.export.graphs import (
    BATCH,
    EXPORTER,
    GraphDef,
    build_graphs,
    example_inputs,
    export_graph,
    run_torch,
)
from training.export.parity import TOLERANCES, ParityReport, Tolerance, check_parity
from training.export.quantize import CalibrationData, calibration_inputs, quantize_graph
from training.export.triton import DEFAULT_MAX_BATCH_SIZE, triton_config
from training.jsonutil import to_jsonable

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OPSET = 17
DEFAULT_MAX_INT8_DROP = 2.0  # points: accuracy in percentage points, CCC × 100
CHECK_WINDOWS = 8  # real clips built from the check crops


@dataclass
class ExportResult:
    folder: Path
    manifest: Manifest
    parity: dict[str, ParityReport]
    sizes: dict[str, int]  # bytes of each graph file
    int8: dict | None = None  # the manifest's provenance["quantization"], with the fp32 and int8 graph sizes


def _check_onnx(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path.parent.parent.name}: the ONNX checker refuses the exported graph: {exc}") from None


def _trace(graph: GraphDef, path: Path, opset: int) -> None:
    try:
        export_graph(graph, path, opset)
    except (RuntimeError, ValueError, TypeError) as exc:  # a model whose inputs do not fit, an unsupported op
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]  # not the traced graph it dumps
        raise ExportError(f"graph {graph.name!r}: torch.onnx.export failed: {first}") from exc


def _real_inputs(model_graphs: list[GraphDef], crops: np.ndarray, spec: CropSpec, window: int,
                 privileged: np.ndarray | None) -> dict[str, dict[str, np.ndarray]]:
    """Real inputs per graph: frames of the face crops, clips of `window` of them, and the encoder's embeddings."""
    frames = to_model_input(crops, spec)  # (N, 3, S, S)
    n = len(frames)
    clips = np.stack([frames[(i + np.arange(window)) % n] for i in range(CHECK_WINDOWS)])  # (W, T, 3, S, S)
    real: dict[str, dict[str, np.ndarray]] = {}
    for g in model_graphs:
        if g.name == "encoder":
            real[g.name] = {"frames": frames}
        elif g.name == "head":
            encoder = next(e for e in model_graphs if e.name == "encoder")
            flat = torch.from_numpy(clips.reshape(-1, *clips.shape[2:]))  # (W·T, 3, S, S)
            emb = run_torch(encoder, (flat,))[0].numpy()  # (W·T, D)
            real[g.name] = {"embeddings": emb.reshape(CHECK_WINDOWS, window, -1)}  # (W, T, D)
        else:
            real[g.name] = {"video": clips}
            if privileged is not None:
                real[g.name]["privileged"] = np.asarray(privileged, np.float32)
    return real


def _graph_spec(graph: GraphDef, dtype: str = "float32") -> dict:
    out_shapes = [tuple(t.shape[1:]) for t in run_torch(graph, example_inputs(graph))]
    return {"file": graph_file(graph.name),
            "inputs": [{"name": n, "shape": [BATCH, *s], "dtype": dtype} for n, s in graph.inputs.items()],
            "outputs": [{"name": n, "shape": [BATCH, *s], "dtype": dtype}
                        for n, s in zip(graph.outputs, out_shapes, strict=True)]}


def _int8(graphs: list[GraphDef], fp32_paths: dict[str, Path], staging: Path, task: str, spec: CropSpec,
          calibration: CalibrationData, validation: ValidationData, max_drop: float, role: str) -> dict:
    if role == "teacher" and calibration.privileged is None:
        raise ExportError("int8 export of a teacher needs privileged calibration inputs (CalibrationData.privileged)")
    int8_paths = {g.name: staging / graph_file(g.name) for g in graphs}
    for g in graphs:
        int8_paths[g.name].parent.mkdir(parents=True, exist_ok=True)
        inputs = calibration_inputs(g.name, calibration, spec, fp32_paths)
        quantize_graph(fp32_paths[g.name], int8_paths[g.name], inputs)
        _check_onnx(int8_paths[g.name])
    metric = primary_metric(task)
    try:
        fp32 = evaluate_graphs(fp32_paths, task, validation, spec)
        int8 = evaluate_graphs(int8_paths, task, validation, spec)
    except Exception as exc:  # bad validation data: onnxruntime and numpy raise many types
        raise ExportError(f"int8 export: evaluating on the validation data ({validation.split}) failed: {exc}") from exc
    drop = 100.0 * (fp32[metric] - int8[metric])
    summary = {
        "method": "onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 activations, MinMax",
        "calibration": f"{len(calibration.clips)} clips of {calibration.clips.shape[1]} consecutive face crops",
        "bytes": {g.name: {"fp32": fp32_paths[g.name].stat().st_size, "int8": int8_paths[g.name].stat().st_size}
                  for g in graphs},
        "validation": {"split": validation.split, "metric": metric, "samples": fp32["samples"],
                       "fp32": fp32[metric], "int8": int8[metric], "drop_points": drop, "max_drop_points": max_drop,
                       "fp32_metrics": fp32, "int8_metrics": int8},
    }
    log.info("int8 %s on %s: fp32 %.4f, int8 %.4f (drop %.2f points, limit %.2f)", metric, validation.split,
             fp32[metric], int8[metric], drop, max_drop)
    if not drop <= max_drop:
        raise ExportError(f"int8 export refused: validation {metric} drops from {fp32[metric]:.4f} (fp32) to "
                          f"{int8[metric]:.4f} (int8) on {validation.split}, {drop:.2f} points, more than the allowed "
                          f"{max_drop:g} (--max-int8-drop)")
    return summary


def _move_into_place(staging: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not overwrite:
            raise ExportError(f"{out_dir} already exists; choose another --out or pass --force to replace it")
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)


@contextmanager
def _staged(out_dir: Path, overwrite: bool) -> Iterator[tuple[Path, Path]]:
    """(staging, work): the folder is assembled in `staging` beside `out_dir` and moved into place only when the
    block succeeds (else removed); `work` holds intermediate files and is always removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the model folder is an ordinary folder
    work = Path(tempfile.mkdtemp(prefix="pkdot-export-"))
    try:
        yield staging, work
        _move_into_place(staging, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _checked_arguments(precision: str, preprocessing: dict, outputs: dict, check_crops: np.ndarray,
                       calibration: CalibrationData | None, validation: ValidationData | None
                       ) -> tuple[Preprocessing, CropSpec, np.ndarray]:
    """The manifest's preprocessing, its crop spec and the check crops, once every argument is usable."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and (calibration is None or validation is None):
        raise ExportError("an int8 export needs calibration crops and validation data to compare with fp32")
    try:
        pre = Preprocessing.model_validate(preprocessing)
        Outputs.model_validate(outputs)
    except ValidationError as exc:
        raise ExportError(f"invalid preprocessing or outputs for the manifest: {exc}") from None
    spec = CropSpec.from_dict(pre.crop.model_dump())
    crops = np.asarray(check_crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (spec.size, spec.size, 3) or not len(crops):
        raise ExportError(f"check_crops must be uint8 face crops (N, {spec.size}, {spec.size}, 3), got {crops.dtype} "
                          f"{crops.shape}")
    return pre, spec, crops


def _export_checked(graphs: list[GraphDef], real: dict[str, dict[str, np.ndarray]], fp32_dir: Path, opset: int,
                    tolerance: Tolerance | None, fp16: list[GraphDef] | None = None, fp16_dir: Path | None = None
                    ) -> tuple[dict[str, Path], dict[str, ParityReport]]:
    """Trace every graph into `fp32_dir`, run the ONNX checker and the parity check; with `fp16` (the same graphs
    in float16) also trace those into `fp16_dir`, checked against their float32 source. (fp32 paths, parity)."""
    fp32_paths = {g.name: fp32_dir / graph_file(g.name) for g in graphs}
    parity: dict[str, ParityReport] = {}
    for g in graphs:
        _trace(g, fp32_paths[g.name], opset)
        _check_onnx(fp32_paths[g.name])
        # an fp16 export checks its float32 trace at the fp32 tolerance first; `tolerance` is for the fp16 graph
        tol = TOLERANCES["fp32"] if fp16 is not None or tolerance is None else tolerance
        parity[g.name] = check_parity(g, fp32_paths[g.name], real[g.name], tol)
    for g16, g32 in zip(fp16 or [], graphs, strict=fp16 is not None):
        path = fp16_dir / graph_file(g16.name)
        _trace(g16, path, opset)
        _check_onnx(path)
        parity[g16.name] = check_parity(g16, path, real[g16.name], tolerance or TOLERANCES["fp16"], reference=g32)
    return fp32_paths, parity


def _write_folder(staging: Path, graphs: list[GraphDef], manifest_dict: dict, max_batch_size: int) -> Manifest:
    """Validate the manifest, write the Triton configs, the model card and the manifest with every file's sha256,
    and check the folder as the service will read it."""
    for g in graphs:
        manifest_dict["files"][graph_file(g.name)] = "0" * 64  # placeholders, for validation before writing
    try:
        manifest = Manifest.model_validate(json.loads(json.dumps(manifest_dict, default=to_jsonable)))
    except ValidationError as exc:
        raise ExportError(f"the manifest does not validate: {exc}") from None
    for g in graphs:
        (staging / g.name / "config.pbtxt").write_text(triton_config(g.name, manifest.graphs[g.name], max_batch_size))
    (staging / "MODEL_CARD.md").write_text(model_card(manifest))
    manifest = manifest.model_copy(update={"files": folder_files(staging)})
    (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    try:
        return verify_model_folder(staging)
    except ModelFolderError as exc:
        raise ExportError(f"the written folder does not pass its own check: {exc}") from None


def _export_info(precision: str, parity: dict[str, ParityReport]) -> dict:
    return {
        "exporter": EXPORTER, "torch": torch.__version__, "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"), "precision": precision,
        "tolerance": next(iter(parity.values())).tolerance.as_dict(),
        "parity": {k: r.as_dict() for k, r in parity.items()},
        "parity_of": "the float32 graphs, before quantisation" if precision == "int8" else "the exported graphs",
    }


def export_model(
    model: nn.Module,
    *,
    task: str,
    role: str,
    name: str,
    version: str,
    out_dir: str | os.PathLike,
    preprocessing: dict,
    outputs: dict,
    provenance: dict,
    check_crops: np.ndarray,
    privileged_shape: tuple[int, ...] | None = None,
    check_privileged: np.ndarray | None = None,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    tolerance: Tolerance | None = None,
    calibration: CalibrationData | None = None,
    validation: ValidationData | None = None,
    max_int8_drop: float = DEFAULT_MAX_INT8_DROP,
    licence: str | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    overwrite: bool = False,
) -> ExportResult:
    """Export `model` (eval mode, CPU) into the model folder `out_dir`; returns what was written and measured.

    task, role: "pain" | "affect", "student" | "teacher". A student with `encode_frames` / `forward_embeddings`
        (StreamingStudent) exports as graphs "encoder" + "head", any other model as one graph "model".
    preprocessing, outputs: the manifest's sections (pkdot_contract.manifest.Preprocessing / Outputs as dicts).
    provenance: recorded as is, plus the export's measurements; keys the model card reads: "dataset" (name or
        {"name": ...}), "synthetic" (bool), "split", "metrics" ({metric: value} on `split`, or {split: {...}}).
    check_crops: real face crops, uint8 (N, S, S, 3) as `crop_face` makes them, for the parity check.
    privileged_shape: a teacher's privileged input shape without the batch axis, e.g. (3, 2816);
        check_privileged: optional real privileged inputs (M, *privileged_shape) for the check (else random).
    precision: "fp32"; "fp16" (float16 weights and compute, float32 inputs/outputs; meant for GPUs — it runs on
        the CPU too, within the looser fp16 tolerance); "int8" (needs `calibration` and `validation`).
    tolerance: parity tolerance (default training.export.parity.TOLERANCES[precision]; int8 checks its float32
        source at the fp32 tolerance and then judges the int8 graphs by `max_int8_drop`, in points of the task's
        primary metric: pain accuracy in percentage points, affect mean CCC × 100).
    licence: default from the provenance (synthetic data: Apache-2.0; BioVid / Aff-Wild2: research only).
    overwrite: replace an existing `out_dir` (only after the new export has passed every check).
    """
    pre, spec, crops = _checked_arguments(precision, preprocessing, outputs, check_crops, calibration, validation)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} already exists; choose another --out or pass --force to replace it")
    model = model.cpu().eval()

    def build(graph_precision: str = "fp32") -> list[GraphDef]:
        return build_graphs(model, task=task, role=role, size=spec.size, window=pre.window,
                            privileged_shape=privileged_shape, precision=graph_precision)

    with _staged(out_dir, overwrite) as (staging, work):
        try:
            graphs = build()
            real = _real_inputs(graphs, crops, spec, pre.window, check_privileged)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ExportError(f"the model does not run on the inputs its manifest describes: {exc}") from exc
        fp16 = build("fp16") if precision == "fp16" else None
        fp32_paths, parity = _export_checked(graphs, real, staging if precision == "fp32" else work, opset,
                                             tolerance, fp16, staging)
        int8 = None
        if precision == "int8":
            int8 = _int8(graphs, fp32_paths, staging, task, spec, calibration, validation, max_int8_drop, role)
        prov = {**provenance, "export": _export_info(precision, parity)}
        if int8 is not None:
            prov["quantization"] = int8
        manifest = _write_folder(staging, graphs, {
            "schema_version": SCHEMA_VERSION, "name": name, "version": version, "task": task, "role": role,
            "graphs": {g.name: _graph_spec(g) for g in graphs}, "opset": opset, "precision": precision,
            "preprocessing": pre.model_dump(), "outputs": outputs, "files": {},
            "provenance": prov, "licence": licence or default_licence(provenance),
        }, max_batch_size)

    sizes = {name: (out_dir / g.file).stat().st_size for name, g in manifest.graphs.items()}
    log.info("exported %s %s (%s) to %s", name, version, precision, out_dir)
    return ExportResult(out_dir, manifest, parity, sizes, int8)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    try:
        return pkg_version(package)
    except PackageNotFoundError:
        return "unknown"

