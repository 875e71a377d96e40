"""Export: a trained model → a checked, self-describing model folder the service (and Triton) can load.

    from training.export import export_model, verify_model_folder

    result = export_model(model, task="pain", role="student", name="pain-student", version="1",
                          out_dir="models/pain-student", preprocessing=..., outputs=..., provenance=...,
                          check_crops=crops)
    verify_model_folder("models/pain-student")  # sha256 of every file, graph interfaces, Triton configs

Modules: `graphs` (what is exported, the torch → ONNX call), `parity` (ONNX Runtime vs PyTorch), `quantize`
(int8), `evaluate` (running graphs like the service, validation metrics), `triton` (config.pbtxt), `card`
(MODEL_CARD.md), `folder` (verify_model_folder), `export` (export_model), `run_folder` (reading a training run),
`command` (`pkdot export`).

Importing this package does not import torch (the `pkdot` CLI imports `training.export.command` at start-up);
the names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_model": "training.export.export",
    "ExportResult": "training.export.export",
    "ExportError": "training.export.errors",
    "verify_model_folder": "training.export.folder",
    "Tolerance": "training.export.parity",
    "TOLERANCES": "training.export.parity",
    "CalibrationData": "training.export.quantize",
    "ValidationData": "training.export.evaluate",
    "OnnxPredictor": "training.export.evaluate",
    "evaluate_model_folder": "training.export.evaluate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training.export' has no attribute {name!r}")
