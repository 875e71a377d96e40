"""Teacher, T-Net and student runs end to end on tiny synthetic data: run folders, resume, evaluation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pkdot.cli import main
from training.config import load_config
from training.errors import ConfigError
from training.evaluate import evaluate_run
from training.train import load_run, run_training

TINY_MODELS = [
    "models.teacher={'visual_cfg': {'frame_dim': 16, 'out_dim': 32, 'width': 0.25, 'hidden_dim': 16}, "
    "'privileged_cfg': {'out_dim': 32, 'channels': [8, 8, 16]}, 'fusion_dim': 32, 'num_tokens': 2, 'num_heads': 2}",
    "models.student={'name': 'streaming_student', 'frame_dim': 16, 'embed_dim': 32, 'width': 0.25, "
    "'hidden_dim': 16}",
]


def pain_config(root: Path, cache: Path, out: Path, kind: str = "teacher", epochs: int = 2, **extra: str):
    overrides = [f"kind={kind!r}", "task='pain'", f"data.root={str(root)!r}", f"data.cache={str(cache)!r}",
                 "data.num_frames=4", "data.folds=3", "data.val_fraction=0.5", "data.signal_norm='baseline'",
                 "data.channels=['gsr', 'emg_trapezius']", f"optim.epochs={epochs}", "optim.batch_size=4",
                 "optim.bn_recalibration_batches=2", "kd.params={'pkdot': {'k': 3}}", "threads=1",
                 f"out={str(out)!r}", *TINY_MODELS, *(f"{k}={v}" for k, v in extra.items())]
    return load_config(None, overrides)


def test_teacher_run_folder(teacher_run: Path) -> None:
    for name in ("config.json", "split.json", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt", "metrics.json",
                 "learning_curves.png", "confusion_test.png"):
        assert (teacher_run / name).is_file(), name
    summary = json.loads((teacher_run / "metrics.json").read_text())
    assert summary["kind"] == "teacher" and 1 <= summary["best_epoch"] <= 2
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    rows = [json.loads(line) for line in (teacher_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    split = json.loads((teacher_run / "split.json").read_text())
    subjects = {part: {k.split("/")[0] for k in keys} for part, keys in split.items()}
    assert not (subjects["train"] & subjects["test"]) and not (subjects["val"] & subjects["test"])
    best = torch.load(teacher_run / "best.pt", weights_only=True)
    assert set(best) == {"model", "epoch", "val"}  # a state dict, never a pickled module


def test_resume_continues_where_it_stopped(tiny_biovid, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    out = tmp_path / "resumed"
    run_training(pain_config(root, cache, out, epochs=1), progress=False)
    first = (out / "metrics.jsonl").read_text().splitlines()
    run_training(pain_config(root, cache, out, epochs=3), progress=False)
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert rows[0] == first[0] and [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]
    changed = pain_config(root, cache, out, epochs=4)
    changed.data.num_frames, changed.optim.lr = 3, 0.5
    with pytest.raises(ConfigError, match=r"data.num_frames: 4 -> 3; optim.lr: 0.001 -> 0.5"):
        run_training(changed, progress=False)  # another configuration never continues this run's checkpoint
    assert (out / "metrics.jsonl").read_text().splitlines() == rows


@pytest.mark.parametrize("method", ["pkdot", "none", "kd", "pkd", "smpkd", "rkd", "pkt", "fitnet"])
def test_distill_every_method(method: str, tiny_biovid, teacher_run: Path, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, tmp_path / method, kind="student", epochs=1, teacher_run=repr(str(teacher_run)))
    cfg.kd.method = method
    summary = run_training(cfg, progress=False)
    row = json.loads((tmp_path / method / "metrics.jsonl").read_text().splitlines()[0])
    assert summary["kind"] == "student" and 0.0 <= summary["test"]["accuracy"] <= 1.0
    if method != "none":
        assert "train_kd" in row and row["train_kd"] >= 0.0  # the KD term was computed and logged
    _, student = load_run(tmp_path / method)
    assert not any(name.startswith("teacher") for name in student.state_dict())


def test_tnet_then_paper_student(tiny_biovid, teacher_run: Path, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    tnet = tmp_path / "tnet"
    run_training(pain_config(root, cache, tnet, kind="tnet", epochs=1, teacher_run=repr(str(teacher_run))),
                 progress=False)
    assert (tnet / "best.pt").is_file()
    cfg = pain_config(root, cache, tmp_path / "paper", kind="student", epochs=1,
                      teacher_run=repr(str(teacher_run)), tnet_run=repr(str(tnet)))
    cfg.models["student"] = {"name": "paper_student", "visual_cfg": {"frame_dim": 16, "out_dim": 32, "width": 0.25,
                                                                     "hidden_dim": 16},
                             "privileged_dim": 32, "fusion_dim": 32, "num_tokens": 2, "num_heads": 2}
    run_training(cfg, progress=False)
    _, student = load_run(tmp_path / "paper")
    trained_tnet = torch.load(tnet / "best.pt", weights_only=True)["model"]
    for k, v in trained_tnet.items():  # the T-Net is loaded (and kept frozen), unlike the released code
        torch.testing.assert_close(student.tnet.state_dict()[k], v)


def test_paper_student_without_a_trained_tnet_is_refused(tiny_biovid, teacher_run: Path, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, tmp_path / "paper", kind="student", epochs=1, teacher_run=repr(str(teacher_run)))
    cfg.models["student"] = {"name": "paper_student"}
    with pytest.raises(ConfigError, match="train-tnet"):
        run_training(cfg, progress=False)
    assert not (tmp_path / "paper").exists()  # refused before anything is trained or written


def test_a_tnet_run_for_a_student_without_a_tnet_is_refused(tiny_biovid, teacher_run: Path, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, tmp_path / "s", kind="student", epochs=1, teacher_run=repr(str(teacher_run)),
                      tnet_run=repr(str(tmp_path / "tnet")))
    with pytest.raises(ConfigError, match="no T-Net"):
        run_training(cfg, progress=False)


def test_evaluate_matches_the_run(teacher_run: Path) -> None:
    result = evaluate_run(teacher_run)
    summary = json.loads((teacher_run / "metrics.json").read_text())
    assert result["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert result["counts"]["test"] == 10  # one held-out subject x 10 samples


def test_cli_train_and_bad_config(tiny_biovid, tmp_path: Path, capsys) -> None:
    root, cache = tiny_biovid
    args = ["train-teacher", "--task", "pain", "--data", str(root), "--cache", str(cache), "--out",
            str(tmp_path / "cli"), "--epochs", "1", "--no-progress", "--set", "data.num_frames=4",
            "--set", "data.folds=3", "--set", "data.val_fraction=0.5", "--set", "optim.batch_size=4",
            *[a for m in TINY_MODELS for a in ("--set", m)]]
    assert main(args) == 0
    assert "best epoch 1" in capsys.readouterr().out
    assert main(["train-teacher", "--set", "optim.lr=-1", "--data", str(root), "--cache", str(cache)]) == 2
    assert "optim.lr must be positive" in capsys.readouterr().err
    assert main(["train-teacher", "--set", "optim.nonsense=1"]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert main(["distill", "--data", str(root), "--cache", str(cache), "--out", str(tmp_path / "s")]) == 2
    assert "teacher_run" in capsys.readouterr().err


def test_affect_teacher_and_student(tiny_affwild2, tmp_path: Path) -> None:
    root, cache = tiny_affwild2
    common = [f"data.root={str(root)!r}", f"data.cache={str(cache)!r}", "task='affect'", "data.dataset='affwild2'",
              "data.num_frames=3", "data.frame_stride=2", "data.target_stride=6", "data.folds=3",
              "data.val_fraction=0.5", "optim.epochs=1", "optim.batch_size=4", "threads=1",
              "models.teacher={'visual_cfg': {'frame_dim': 16, 'out_dim': 32, 'width': 0.25, 'hidden_dim': 16}, "
              "'privileged_cfg': {'out_dim': 32, 'channels': [8, 16]}, 'fusion_dim': 32, 'num_tokens': 2, "
              "'num_heads': 2}", TINY_MODELS[1]]
    teacher = tmp_path / "teacher"
    summary = run_training(load_config(None, [*common, "kind='teacher'", f"out={str(teacher)!r}"]), progress=False)
    assert -1.0 <= summary["test"]["ccc_mean"] <= 1.0 and (teacher / "va_scatter_test.png").is_file()
    cfg = load_config(None, [*common, "kind='student'", "kd.method='pkdot'", "kd.params={'pkdot': {'k': 3}}",
                             f"teacher_run={str(teacher)!r}", f"out={str(tmp_path / 'student')!r}"])
    summary = run_training(cfg, progress=False)
    assert set(summary["test"]) >= {"ccc_valence", "ccc_arousal", "rmse_valence", "pearson_arousal"}
