"""int8 (static QDQ quantisation, judged on validation data against fp32) and fp16 exports of tiny models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from tests.training.test_export import SPEC, WINDOW, export_student, tiny_student
from training.export import TOLERANCES, CalibrationData, ExportError, ValidationData, verify_model_folder
from training.export.run_folder import astronaut_crops


def varied_clips(crops: np.ndarray, count: int, seed: int) -> np.ndarray:
    """uint8 (count, T, S, S, 3): windows of the real crops under random brightness, contrast and noise."""
    rng = np.random.default_rng(seed)
    clips = crops[(np.arange(count)[:, None] + np.arange(WINDOW)) % len(crops)].astype(np.float32)  # (N, T, S, S, 3)
    gain = rng.uniform(0.6, 1.4, (count, 1, 1, 1, 1))
    offset = rng.uniform(-40, 40, (count, 1, 1, 1, 1))
    noise = rng.normal(0, 6, clips.shape)
    return np.clip(clips * gain + offset + noise, 0, 255).astype(np.uint8)


def torch_predictions(model, clips: np.ndarray) -> dict[str, np.ndarray]:
    from pkdot_contract.preprocessing.crop import to_model_input

    with torch.no_grad():
        out = model(torch.from_numpy(to_model_input(clips, SPEC)))
    return {k: v.numpy() for k, v in out.items()}




@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return astronaut_crops(SPEC)


@pytest.fixture(scope="module")
def calibration(crops) -> CalibrationData:
    return CalibrationData(varied_clips(crops, 32, seed=1))


@pytest.fixture(scope="module")
def pain_student():
    return tiny_student("pain")


@pytest.fixture(scope="module")
def pain_validation(pain_student, crops) -> ValidationData:
    clips = varied_clips(crops, 48, seed=2)
    labels = torch_predictions(pain_student, clips)["logits"].argmax(-1)  # fp32 is right by construction
    return ValidationData.from_arrays(clips, labels, split="astronaut clips, labelled by the fp32 model")


def node_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_int8_export_records_accuracy_next_to_fp32(pain_student, crops, calibration, pain_validation, tmp_path):
    result = export_student(pain_student, tmp_path / "pain-int8", crops, precision="int8", calibration=calibration,
                            validation=pain_validation, max_int8_drop=100.0)
    m = verify_model_folder(result.folder)
    assert m.precision == "int8"
    q = m.provenance["quantization"]
    v = q["validation"]
    assert v["metric"] == "accuracy" and v["samples"] == 48 and v["split"] == pain_validation.split
    assert v["fp32"] == 1.0 and 0.0 <= v["int8"] <= 1.0
    assert v["drop_points"] == pytest.approx(100 * (v["fp32"] - v["int8"]))
    assert v["fp32_metrics"]["accuracy"] == v["fp32"] and "macro_f1" in v["int8_metrics"]
    for spec in m.graphs.values():
        assert {"QuantizeLinear", "DequantizeLinear"} <= node_types(result.folder / spec.file)
        assert all(t.dtype == "float32" for t in (*spec.inputs, *spec.outputs))  # the interface does not change
    sizes = q["bytes"]
    # per-channel scales and int32 biases weigh more in a tiny model than in a real one (about 4x smaller there)
    assert sizes["encoder"]["int8"] < 0.6 * sizes["encoder"]["fp32"]
    assert "int8" in (result.folder / "MODEL_CARD.md").read_text().lower()


def test_int8_refused_when_accuracy_drops_too_much(pain_student, crops, calibration, pain_validation, tmp_path):
    out = tmp_path / "pain-int8"
    # the int8 model can at best equal fp32 (100 %), so a limit below zero must refuse it, with the numbers
    with pytest.raises(ExportError, match=r"int8 export refused: validation accuracy drops from 1\.0000 \(fp32\) to "
                                          r"[01]\.\d{4} \(int8\) on astronaut clips.*more than the allowed -1"):
        export_student(pain_student, out, crops, precision="int8", calibration=calibration,
                       validation=pain_validation, max_int8_drop=-1.0)
    assert not out.exists()


def test_int8_needs_calibration_and_validation(pain_student, crops, tmp_path):
    with pytest.raises(ExportError, match="needs calibration crops and validation data"):
        export_student(pain_student, tmp_path / "x", crops, precision="int8")


def test_int8_affect_student_judged_by_ccc(crops, calibration, tmp_path):
    model = tiny_student("affect")
    clips = varied_clips(crops, 48, seed=3)
    va = torch_predictions(model, clips)["va"]  # (N, 2)
    validation = ValidationData.from_arrays(clips, va, split="astronaut clips, fp32 targets")
    result = export_student(model, tmp_path / "affect-int8", crops, precision="int8", calibration=calibration,
                            validation=validation, max_int8_drop=100.0)
    v = result.manifest.provenance["quantization"]["validation"]
    assert v["metric"] == "ccc_mean" and v["fp32"] == pytest.approx(1.0, abs=1e-3)
    assert -1.0 <= v["int8"] <= 1.0


def test_fp16_export(pain_student, crops, tmp_path):
    fp32 = export_student(pain_student, tmp_path / "fp32", crops)
    fp16 = export_student(pain_student, tmp_path / "fp16", crops, precision="fp16")
    m = verify_model_folder(fp16.folder)
    assert m.precision == "fp16"
    assert all(t.dtype == "float32" for g in m.graphs.values() for t in (*g.inputs, *g.outputs))
    weights = onnx.load(str(fp16.folder / "encoder/1/model.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert fp16.sizes["encoder"] < 0.6 * fp32.sizes["encoder"]
    assert m.provenance["export"]["tolerance"] == TOLERANCES["fp16"].as_dict()
    for report in fp16.parity.values():  # measured against the float32 PyTorch model
        assert all(e <= 2e-2 for e in report.max_abs_error.values()), report.max_abs_error
