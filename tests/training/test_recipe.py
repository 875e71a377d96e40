"""The training recipe's parts: cached teacher targets, mixed precision, the cosine schedule, photometric
augmentation and the table-driven input normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pkdot_contract.preprocessing.crop import CropSpec, to_model_input
from tests.training.test_training import pain_config
from training.config import OptimConfig, load_config
from training.data.biovid import TorchDraws, augment_clip, augmented_model_input
from training.data.build import build_datasets
from training.engine import make_scheduler
from training.errors import ConfigError
from training.objectives import privileged_input
from training.teacher_targets import TeacherTargets, clip_ids
from training.train import load_run, run_training


def test_cached_targets_are_the_teachers_outputs_on_the_evaluation_view(tiny_biovid, teacher_run: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, teacher_run.parent / "unused", kind="student", teacher_run=repr(str(teacher_run)))
    data = build_datasets(cfg.data, "pain")
    _, teacher = load_run(teacher_run)
    targets = TeacherTargets(teacher, data.train_eval(), batch_size=3, device=torch.device("cpu"))
    assert len(targets) == len(data.train)
    batch = next(iter(DataLoader(data.train_eval(), batch_size=5, shuffle=True,
                                 generator=torch.Generator().manual_seed(1))))
    with torch.no_grad():
        direct = teacher(batch["video"], privileged_input(batch))
    found = targets.lookup(batch)
    assert set(found) == {"embedding", "logits"}
    # equal up to float summation order (the batches differ in size)
    torch.testing.assert_close(found["embedding"], direct["embedding"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(found["logits"], direct["logits"], rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match="not among the training clips"):
        targets.lookup({"key": ["nobody/none"]})


def test_clip_ids_tell_the_target_frames_of_one_track_apart() -> None:
    assert clip_ids({"key": ["a/1", "a/2"]}) == ["a/1", "a/2"]
    assert clip_ids({"key": ["v", "v"], "frame": torch.tensor([24, 48])}) == ["v@24", "v@48"]


def _teacher_calls(tiny_biovid, teacher_run: Path, out: Path, mode: str) -> tuple[int, int]:
    """(teacher forward calls, training steps) of a one-epoch PKDOT run with kd.teacher = mode."""
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, out, kind="student", epochs=1, teacher_run=repr(str(teacher_run)))
    cfg.kd.method, cfg.kd.teacher = "pkdot", mode
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: calls.append(1) if type(module).__name__ == "Teacher" else None)
    try:
        run_training(cfg, progress=False)
    finally:
        handle.remove()
    steps = len(build_datasets(cfg.data, "pain").train) // cfg.optim.batch_size  # drop_last
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_kd"] >= 0.0
    return len(calls), steps


def test_a_cached_teacher_runs_once_per_training_clip_batch(tiny_biovid, teacher_run: Path, tmp_path: Path) -> None:
    cached, steps = _teacher_calls(tiny_biovid, teacher_run, tmp_path / "cached", "cached")
    online, _ = _teacher_calls(tiny_biovid, teacher_run, tmp_path / "online", "online")
    root, cache = tiny_biovid
    clips = len(build_datasets(pain_config(root, cache, tmp_path / "x", kind="student",
                                           teacher_run=repr(str(teacher_run))).data, "pain").train)
    assert cached == -(-clips // 4)  # one pass over the training clips, batch 4
    assert online == steps  # one teacher call per training step


def test_bf16_training_keeps_float32_weights(tiny_biovid, teacher_run: Path, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, tmp_path / "bf16", kind="student", epochs=1, teacher_run=repr(str(teacher_run)))
    cfg.kd.method, cfg.optim.precision = "pkdot", "bf16"
    summary = run_training(cfg, progress=False)
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    _, student = load_run(tmp_path / "bf16")
    assert all(p.dtype == torch.float32 for p in student.parameters())
    with pytest.raises(ConfigError, match="optim.precision"):
        load_config(None, ["optim.precision='fp16'"])


def test_cosine_schedule_warms_up_then_decays() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = make_scheduler(optimizer, OptimConfig(schedule="cosine", epochs=4, warmup_epochs=1.0),
                               steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then falls
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # lr / 20 after the last step
    plateau = make_scheduler(optimizer, OptimConfig(schedule="plateau"))
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_recipe_options_are_checked(tmp_path: Path) -> None:
    config = Path("configs/synthetic/pain.toml")
    assert load_config(config, ["kd.params.kd.weight=1.0"]).kd.params["kd"] == {"weight": 1.0}
    for override, message in [("kd.params=8", "kd.params must map each method to its options"),
                              ("optim.precision='fp16'", "optim.precision must be fp32 or bf16"),
                              ("optim.schedule='step'", "optim.schedule must be plateau or cosine"),
                              ("kd.teacher='live'", "kd.teacher must be cached or online"),
                              ("data.photometric=5", r"data.photometric must be in \[0, 2\]")]:
        with pytest.raises(ConfigError, match=message):
            load_config(config, [override])


def test_photometric_augmentation_changes_light_not_geometry() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32]
    frame = np.stack([4 * x + 50, 4 * y + 50, 2 * (x + y) + 60], -1).astype(np.uint8)  # (32, 32, 3) smooth ramps
    clip = np.repeat(frame[None], 3, axis=0)  # (3, 32, 32, 3)
    plain = augment_clip(clip, np.random.default_rng(7), max_shift=0)
    lit = augment_clip(clip, np.random.default_rng(7), max_shift=0, photometric=1.0)
    assert plain.shape == lit.shape == clip.shape and lit.dtype == np.uint8
    assert not np.array_equal(plain, lit)
    assert all(np.array_equal(lit[0], f) for f in lit[1:])  # the same light for every frame of the clip
    for c in range(3):  # an affine change of each channel: the ordering of the values is kept
        a, b = plain[0, ..., c].ravel().astype(float), lit[0, ..., c].ravel().astype(float)
        assert np.corrcoef(a, b)[0, 1] > 0.99
    assert np.array_equal(augment_clip(clip, np.random.default_rng(3)),
                          augment_clip(clip, np.random.default_rng(3), photometric=0.0))
    assert abs(float(augment_clip(clip, rng, photometric=1.0).mean()) - float(clip.mean())) < 60


@pytest.mark.parametrize("colour", ["RGB", "BGR"])
def test_model_input_tables_equal_the_formula(colour: str) -> None:
    crops = np.random.default_rng(1).integers(0, 256, (2, 4, 16, 16, 3), dtype=np.uint8)
    spec = CropSpec(size=16, colour=colour, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    x = crops.astype(np.float32) / 255.0
    x = x[..., ::-1] if colour == "BGR" else x
    expected = np.moveaxis((x - np.float32(spec.mean)) / np.float32(spec.std), -1, -3)
    got = to_model_input(crops, spec)
    assert got.shape == (2, 4, 3, 16, 16) and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="uint8 crops"):
        to_model_input(crops.astype(np.float32), spec)


@pytest.mark.parametrize("colour", ["RGB", "BGR"])
def test_a_remap_table_folds_into_the_normalisation(colour: str) -> None:
    crops = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    spec = CropSpec(size=16, colour=colour, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    remap = np.random.default_rng(3).integers(0, 256, (256, 3), dtype=np.uint8)  # per RGB channel
    remapped = np.stack([remap[crops[..., c], c] for c in range(3)], -1)  # (3, 16, 16, 3)
    np.testing.assert_array_equal(to_model_input(crops, spec, remap=remap), to_model_input(remapped, spec))
    with pytest.raises(ValueError, match="remap must be a uint8"):
        to_model_input(crops, spec, remap=remap[:10])


def test_augmented_model_input_equals_augmenting_then_normalising() -> None:
    crops = np.random.default_rng(4).integers(0, 256, (4, 20, 20, 3), dtype=np.uint8)
    spec = CropSpec(size=20)
    for seed in range(6):
        for photometric in (0.0, 1.0):
            torch.manual_seed(seed)
            fused = augmented_model_input(crops, TorchDraws(), spec, photometric)
            torch.manual_seed(seed)
            plain = to_model_input(augment_clip(crops, TorchDraws(), photometric=photometric), spec)
            np.testing.assert_array_equal(fused, plain)
    torch.manual_seed(0)
    first = augmented_model_input(crops, TorchDraws(), spec, 1.0)
    torch.manual_seed(0)
    assert np.array_equal(first, augmented_model_input(crops, TorchDraws(), spec, 1.0))  # torch's seed decides
    assert not np.array_equal(first, augmented_model_input(crops, TorchDraws(), spec, 1.0))


def test_a_student_loads_the_privileged_signal_only_for_its_teacher(tiny_biovid, teacher_run: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, teacher_run.parent / "unused", kind="student", teacher_run=repr(str(teacher_run)))
    data = build_datasets(cfg.data, "pain", privileged=False)
    assert "signal" not in data.train[0] and "signal" not in data.test[0]
    assert "signal" in data.train_eval(privileged=True)[0]  # what the cached teacher targets are computed on
    assert [s.key for s in data.train.samples] == [s.key for s in data.train_eval(privileged=True).samples]


def test_epochs_before_validate_from_only_train(tiny_biovid, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, tmp_path / "late", epochs=3)
    cfg.optim.validate_from = 3
    summary = run_training(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "late" / "metrics.jsonl").read_text().splitlines()]
    assert [("val_accuracy" in r) for r in rows] == [False, False, True]
    assert summary["best_epoch"] == 3
    header, *lines = (tmp_path / "late" / "metrics.csv").read_text().splitlines()
    assert "val_accuracy" in header.split(",") and len(lines) == 3
    assert (tmp_path / "late" / "learning_curves.png").stat().st_size > 0
    cfg.optim.validate_from, cfg.out = 10, str(tmp_path / "short")  # beyond the last epoch: the last is validated
    assert run_training(cfg, progress=False)["best_epoch"] == 3
    with pytest.raises(ConfigError, match="optim.validate_from"):
        load_config(Path("configs/synthetic/pain.toml"), ["optim.validate_from=0"])


def test_ema_keeps_the_moving_average_of_the_weights(tiny_biovid, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    cfg = pain_config(root, cache, tmp_path / "ema", epochs=2)
    cfg.optim.ema_decay, cfg.optim.validate_from = 0.5, 2
    summary = run_training(cfg, progress=False)
    assert summary["best_epoch"] == 2
    kept = torch.load(tmp_path / "ema" / "best.pt", weights_only=True)["model"]
    last = torch.load(tmp_path / "ema" / "last.pt", weights_only=False)
    trained = {k[len("model."):]: v for k, v in last["objective"].items() if k.startswith("model.")}
    averaged = [k for k, v in kept.items() if v.is_floating_point() and "running" not in k]
    assert averaged and all(torch.isfinite(kept[k]).all() for k in averaged)
    assert any(not torch.equal(kept[k], trained[k]) for k in averaged)  # the average, not the last weights
    names = [k for k, p in load_run(tmp_path / "ema")[1].named_parameters()]
    for name, average in zip(names, last["ema"], strict=True):  # what best.pt holds is that average
        torch.testing.assert_close(kept[name], average)
    with pytest.raises(ConfigError, match="optim.ema_decay"):
        load_config(Path("configs/synthetic/pain.toml"), ["optim.ema_decay=1.0"])
