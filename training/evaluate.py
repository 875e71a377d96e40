"""Re-evaluate a finished run (its best checkpoint) on the validation and test parts of its split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.data.build import build_datasets
from training.metrics import per_subject, task_metrics
from training.objectives import TARGET_KEY, predictions, privileged_input
from training.train import load_run


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, ds, task: str, teacher: bool, batch_size: int = 32):
    targets, preds, subjects = [], [], []
    for batch in DataLoader(ds, batch_size=batch_size):
        out = model(batch["video"], privileged_input(batch)) if teacher else model(batch["video"])
        targets.append(batch[TARGET_KEY[task]].numpy())
        preds.append(predictions(task, out).numpy())
        subjects += list(batch["subject"])
    return np.concatenate(targets), np.concatenate(preds), subjects


def evaluate_run(run_dir: str | Path, root: str | None = None, cache: str | None = None) -> dict:
    cfg, model = load_run(run_dir)
    if cfg.kind == "tnet":
        from training.errors import ConfigError

        raise ConfigError(f"{run_dir} is a T-Net run; evaluate the student that uses it")
    cfg.data.root, cfg.data.cache = root or cfg.data.root, cache or cfg.data.cache
    teacher = cfg.kind == "teacher"
    data = build_datasets(cfg.data, cfg.task, privileged=teacher)
    result: dict = {"counts": {}}
    for part, ds in (("val", data.val), ("test", data.test)):
        y, p, subjects = predict_dataset(model, ds, cfg.task, teacher, cfg.optim.batch_size)
        result[part] = task_metrics(cfg.task, y, p, data.num_classes)
        result[f"{part}_per_subject"] = per_subject(cfg.task, subjects, y, p, data.num_classes)
        result["counts"][part] = len(y)
    return result
