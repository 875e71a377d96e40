"""`pkdot export RUN_DIR --out models/NAME` on run folders laid out like the training loop's."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pkdot_contract.manifest import load_manifest
from tests.training.test_export import SPEC, WINDOW, warm
from tests.training.test_export_precision import torch_predictions, varied_clips
from training.data.cache import CropCache
from training.errors import ConfigError
from training.export import ExportError, verify_model_folder
from training.export.command import add_arguments, run
from training.export.run_folder import astronaut_crops
from training.models import create_model

TINY_VISUAL = {"frame_dim": 32, "out_dim": 64, "width": 0.25, "hidden_dim": 32, "dilations": [1, 2]}
STUDENT = {"name": "streaming_student", "task": "pain", "num_classes": 5, "frame_dim": 32, "embed_dim": 64,
           "width": 0.25, "hidden_dim": 32, "dilations": [1, 2]}
TEACHER = {"name": "teacher", "task": "pain", "num_classes": 5, "visual_cfg": TINY_VISUAL, "privileged": "biosignal",
           "privileged_cfg": {"kind": "raw", "in_channels": 2, "out_dim": 64}, "fusion_dim": 64, "num_heads": 2}


def pkdot_export(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="pkdot export")
    add_arguments(parser)
    return run(parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A face-crop cache as `pkdot prepare` writes it: three samples of six crops of a real face."""
    root = tmp_path_factory.mktemp("cache")
    cache = CropCache(root)
    cache.write_meta({"dataset": "biovid", "root": "/data/biovid", "crop": SPEC.to_dict(),
                      "detector": {"name": "mediapipe-blazeface-short-range", "min_score": 0.5}, "every": 1})
    crops = astronaut_crops(SPEC)
    for i in range(3):
        frames = varied_clips(crops, 1, seed=i)[0]  # (T, S, S, 3)
        frames = np.concatenate([frames, frames[:2]])  # 6 frames
        n = len(frames)
        cache.write(f"s{i}/sample{i}", frames, np.arange(n), np.tile([100, 80, 120, 150], (n, 1)), np.ones(n),
                    np.ones(n, bool), 25.0)
    return root


def make_run(root: Path, cache: Path, model_cfg: dict, kind: str, **data) -> tuple[Path, torch.nn.Module]:
    root.mkdir(parents=True)
    options = {k: v for k, v in model_cfg.items() if k != "name"}
    torch.manual_seed(0)
    model = create_model(model_cfg["name"], **options)
    clip = torch.randn(4, WINDOW, 3, SPEC.size, SPEC.size)
    warm(model, clip, torch.randn(4, 2, 2816)) if kind == "teacher" else warm(model, clip)
    torch.save({"model": model.state_dict(), "epoch": 3}, root / "best.pt")
    config = {"kind": kind, "task": model_cfg["task"], "model": model_cfg, "seed": 0,
              "data": {"dataset": "biovid", "root": "/data/biovid", "cache": str(cache), "num_frames": WINDOW,
                       "split": "subject-kfold", "folds": 4, "fold": 0, "signal": "raw",
                       "channels": ["gsr", "emg_trapezius"], **data}}
    (root / "config.json").write_text(json.dumps(config))
    (root / "metrics.json").write_text(json.dumps({"val": {"accuracy": 0.42}, "test": {"accuracy": 0.38}}))
    return root, model


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, cache):
    return make_run(tmp_path_factory.mktemp("runs") / "student", cache, STUDENT, "student")


def test_export_student_run(student_run, tmp_path, capsys) -> None:
    run_dir, _ = student_run
    out = tmp_path / "models" / "pain-student"
    assert pkdot_export(run_dir, "--out", out, "--version", "1.0") == 0
    printed = capsys.readouterr().out
    assert f"exported pain-student 1.0 (pain student, fp32, opset 17) to {out}" in printed
    assert "ONNX Runtime vs PyTorch, max abs error" in printed

    m = verify_model_folder(out)
    assert m.name == "pain-student" and m.streaming and m.outputs.labels == ["BL1", "PA1", "PA2", "PA3", "PA4"]
    assert m.preprocessing.window == WINDOW and m.preprocessing.frame_rate == pytest.approx(WINDOW / 5.5)
    assert m.preprocessing.crop.size == SPEC.size and m.preprocessing.privileged is None
    assert m.preprocessing.detector.name == "mediapipe-blazeface-short-range"
    assert m.provenance["metrics"]["test"]["accuracy"] == 0.38 and m.provenance["config"]["model"] == STUDENT
    assert m.provenance["split"] == "subject-kfold split, fold 0 of 4"
    assert "Research use only" in m.licence and "BioVid" in m.licence  # real-data licence unless told otherwise
    card = (out / "MODEL_CARD.md").read_text()
    assert "| val | accuracy | 0.42 |" in card and "| test | accuracy | 0.38 |" in card


def test_synthetic_run_and_force(student_run, tmp_path) -> None:
    run_dir, _ = student_run
    out = tmp_path / "pain-student"
    assert pkdot_export(run_dir, "--out", out) == 0
    with pytest.raises(ExportError, match="already exists"):
        pkdot_export(run_dir, "--out", out, "--synthetic")
    assert pkdot_export(run_dir, "--out", out, "--synthetic", "--force", "--name", "demo") == 0
    m = load_manifest(out)
    assert m.name == "demo" and m.provenance["synthetic"] and "Apache-2.0" in m.licence
    assert "Trained on synthetic data" in (out / "MODEL_CARD.md").read_text()


def test_export_teacher_run_with_biosignals(tmp_path, cache) -> None:
    run_dir, _ = make_run(tmp_path / "teacher", cache, TEACHER, "teacher")
    out = tmp_path / "pain-teacher"
    assert pkdot_export(run_dir, "--out", out) == 0
    m = verify_model_folder(out)
    assert m.role == "teacher" and set(m.graphs) == {"model"}
    assert [(t.name, t.shape) for t in m.graphs["model"].inputs] == [
        ("video", ["batch", WINDOW, 3, SPEC.size, SPEC.size]), ("privileged", ["batch", 2, 2816])]
    priv = m.preprocessing.privileged
    assert (priv.modality, priv.transform, priv.channels, priv.rate_hz) == ("biosignal", "raw",
                                                                            ["gsr", "emg_trapezius"], 512.0)
    with pytest.raises(ConfigError, match="--int8 is for students"):
        pkdot_export(run_dir, "--out", tmp_path / "x", "--int8")


def test_export_int8_from_the_cache(student_run, cache, tmp_path, capsys) -> None:
    run_dir, model = student_run
    clips = varied_clips(astronaut_crops(SPEC), 24, seed=5)
    labels = torch_predictions(model, clips)["logits"].argmax(-1)
    np.savez(tmp_path / "val.npz", video=clips, target=labels, split="held-out astronaut clips")
    (run_dir / "split.json").write_text(json.dumps({"train": ["s0/sample0", "s2/sample2"], "val": ["s1/sample1"]}))
    out = tmp_path / "pain-int8"
    assert pkdot_export(run_dir, "--out", out, "--int8", "--validation", tmp_path / "val.npz",
                        "--max-int8-drop", "100") == 0
    assert "int8 accuracy on held-out astronaut clips: fp32 1.0000" in capsys.readouterr().out
    q = verify_model_folder(out).provenance["quantization"]
    assert q["calibration"] == f"2 clips of {WINDOW} consecutive face crops"  # one per training sample
    with pytest.raises(ConfigError, match="validation split, which cannot be loaded here.*--validation NPZ"):
        pkdot_export(run_dir, "--out", tmp_path / "y", "--int8")  # the run's dataset root is not on this machine
    (run_dir / "split.json").unlink()


def test_bad_run_folders(tmp_path, cache) -> None:
    with pytest.raises(ConfigError, match="not found"):
        pkdot_export(tmp_path / "missing", "--out", tmp_path / "m")
    run_dir, _ = make_run(tmp_path / "run", cache, STUDENT, "student")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "kind": "tnet"}))
    with pytest.raises(ConfigError, match="'tnet' run is not exported"):
        pkdot_export(run_dir, "--out", tmp_path / "m")
    config["model"] = {**STUDENT, "frame_dim": 48}  # the weights no longer fit
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="best.pt does not fit the model of its config.json"):
        pkdot_export(run_dir, "--out", tmp_path / "m")


def test_command_module_does_not_import_torch() -> None:
    code = "import sys, training.export, training.export.command; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
