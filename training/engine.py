"""The training loop shared by teacher, T-Net and student runs.

A run folder holds: `config.json` (resolved), `split.json` (sample keys per part), `metrics.jsonl` and
`metrics.csv` (one row per epoch), `last.pt` (everything needed to resume), `best.pt` (the model's state dict
at the best validation epoch), `metrics.json` (validation and test metrics of the best epoch, per subject too)
and plots. Epochs are chosen on the validation subjects only; the test fold is evaluated once, at the end.

Distributed: under `torchrun`, each process trains on its shard (DistributedSampler) with gradients averaged by
DistributedDataParallel (gloo on CPU, NCCL on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from pkdot_contract.tasks import pain_labels
from training.config import OptimConfig, RunConfig, config_changes
from training.errors import ConfigError
from training.metrics import PRIMARY_METRIC, confusion_matrix, per_subject, task_metrics
from training.objectives import TARGET_KEY, predictions

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def recalibrate_batchnorm(objective: nn.Module, loader: DataLoader, device: torch.device, max_batches: int) -> None:
    """Precise BatchNorm statistics: the trained model's running mean/var recomputed as plain averages over
    training batches with the final weights. The exponential running averages lag behind weights that moved during
    the epoch, which on short runs makes evaluation-mode outputs collapse."""
    bns = [m for m in objective.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or max_batches <= 0:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    objective.train()
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        objective.forward_model(to_device(batch, device))  # the trained model alone: no teacher, no loss
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum


def make_scheduler(optimizer: torch.optim.Optimizer, o: OptimConfig, steps_per_epoch: int = 1) -> object:
    """The learning-rate schedule. "plateau": ReduceLROnPlateau on the validation metric, stepped per epoch.
    "cosine": a linear warm-up over the first `warmup_epochs` from lr/10, then a cosine decay to lr/20 at the last
    step, stepped per batch."""
    if o.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=o.plateau_factor,
                                                          patience=o.plateau_patience)
    total = max(1, o.epochs * steps_per_epoch)
    warmup = min(total - 1, round(o.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    """Fits `objective` (see training.objectives) with the run configuration and writes the run folder."""

    def __init__(self, cfg: RunConfig, objective: nn.Module, num_classes: int = 5, progress: bool = True) -> None:
        self.cfg, self.objective, self.num_classes = cfg, objective, num_classes
        self.run_dir = Path(cfg.out)
        self.device = torch.device(cfg.device)
        self.rank, self.world = init_distributed(cfg.device)
        self.progress = progress and self.rank == 0
        self.kind_metric = "neg_loss" if cfg.kind == "tnet" else PRIMARY_METRIC[cfg.task]
        self.objective.precision = cfg.optim.precision  # read by training.objectives.mixed_precision
        self.objective.to(self.device)
        if self.device.type == "cpu":  # oneDNN's 2D convolutions: ~1.8x faster forward + backward in channels-last
            self.objective.to(memory_format=torch.channels_last)
        self.params = [p for p in objective.parameters() if p.requires_grad]  # the teacher's are frozen
        o = cfg.optim
        # foreach: one kernel per step for all parameters (torch's default only on GPU); the same update
        if o.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.params, lr=o.lr, weight_decay=o.weight_decay, foreach=True)
        elif o.optimizer == "adamw":  # decoupled weight decay
            self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, weight_decay=o.weight_decay, foreach=True)
        else:
            self.optimizer = torch.optim.SGD(self.params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                             foreach=True)
        self.scheduler: object = None  # made in fit(), where the steps per epoch are known
        self.train_module: nn.Module = objective
        if self.world > 1:
            self.train_module = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
        self.history: list[dict] = []
        self.best, self.best_epoch, self.start_epoch = -math.inf, -1, 0
        # optim.ema_decay > 0: a moving average of the trained model's weights, which validation reads and best.pt keeps
        self.ema_params = [p for p in objective.model.parameters() if p.requires_grad]
        self.ema = [p.detach().clone() for p in self.ema_params] if o.ema_decay > 0 else None
        self.ema_steps = 0

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def _trainable_state(self) -> dict:
        return {k: v for k, v in self.objective.state_dict().items() if not k.startswith("teacher.")}

    def _save_last(self, epoch: int) -> None:
        state = {"objective": self._trainable_state(), "optimizer": self.optimizer.state_dict(),
                 "ema": self.ema, "ema_steps": self.ema_steps,
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch, "best": self.best,
                 "best_epoch": self.best_epoch, "history": self.history, "torch_rng": torch.get_rng_state(),
                 "numpy_rng": np.random.get_state(), "python_rng": random.getstate()}
        tmp = self.run_dir / "last.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.run_dir / "last.pt")

    def _refuse_changed_resume(self) -> None:
        """A stopped run continues only with the configuration it started with: resuming with other data, model or
        losses would mix two runs in one checkpoint."""
        saved = self.run_dir / "config.json"
        if not (self.run_dir / "last.pt").is_file() or not saved.is_file():
            return
        changes = config_changes(json.loads(saved.read_text()), json.loads(json.dumps(self.cfg.to_dict(),
                                                                                      default=str)))
        if changes:
            raise ConfigError(f"{self.run_dir} holds a run started with another configuration ({'; '.join(changes)})"
                              f"; choose a new run folder (--out) or delete this one to start again")

    def _resume(self) -> None:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.objective.load_state_dict(state["objective"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history, self.best, self.best_epoch = state["history"], state["best"], state["best_epoch"]
        if self.ema is not None and state.get("ema") is not None:
            self.ema, self.ema_steps = state["ema"], state["ema_steps"]
        self.start_epoch = state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        log.info("resuming %s after epoch %d (best %s %.4f at epoch %d)", self.run_dir, state["epoch"],
                 self.kind_metric, self.best, self.best_epoch)

    # -- loops -------------------------------------------------------------------------------------------------------
    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        sampler = DistributedSampler(ds, shuffle=True, seed=self.cfg.seed) if train and self.world > 1 else None
        g = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(ds, batch_size=self.cfg.optim.batch_size, shuffle=train and sampler is None,
                          sampler=sampler, drop_last=train and self.cfg.optim.drop_last,
                          num_workers=self.cfg.data.workers, generator=g,
                          persistent_workers=self.cfg.data.workers > 0)

    def train_epoch(self, loader: DataLoader, epoch: int, max_steps: int | None = None) -> dict[str, float]:
        self.train_module.train()
        if self.scheduler is None:  # called without fit(): the schedule over this loader
            self.scheduler = make_scheduler(self.optimizer, self.cfg.optim, len(loader))
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.cfg.optim.epochs}", leave=False, disable=not self.progress)
        for step, batch in enumerate(bar):
            if max_steps is not None and step >= max_steps:
                break
            losses, _ = self.train_module(to_device(batch, self.device))
            if not torch.isfinite(losses["loss"]):
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step}: {losses}")
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if self.cfg.optim.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip, foreach=True)
            self.optimizer.step()
            self._update_ema()
            if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step()  # a schedule over steps
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
        if n == 0:
            raise ValueError(f"no training batch: {len(loader.dataset)} samples with batch size "
                             f"{self.cfg.optim.batch_size} and drop_last (lower optim.batch_size)")
        return {f"train_{k}": v / n for k, v in sums.items()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        self.ema_steps += 1
        decay = min(self.cfg.optim.ema_decay, (1.0 + self.ema_steps) / (10.0 + self.ema_steps))
        for average, p in zip(self.ema, self.ema_params, strict=True):
            average.lerp_(p.detach(), 1.0 - decay)

    @contextlib.contextmanager
    def _averaged_weights(self) -> Iterator[None]:
        """The trained model holds the weights' moving average inside the block (optim.ema_decay > 0)."""
        if self.ema is None:
            yield
            return
        current = [p.detach().clone() for p in self.ema_params]
        with torch.no_grad():
            for p, average in zip(self.ema_params, self.ema, strict=True):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(self.ema_params, current, strict=True):
                    p.copy_(saved)

    @torch.no_grad()
    def evaluate(self, ds: Dataset) -> dict:
        """Loss and task metrics over a dataset; also returns targets, predictions and subjects."""
        self.objective.eval()
        loader = DataLoader(ds, batch_size=self.cfg.optim.batch_size, shuffle=False,
                            num_workers=self.cfg.data.workers)
        total, n, targets, preds, subjects = 0.0, 0, [], [], []
        for batch in loader:
            batch = to_device(batch, self.device)
            losses, out = self.objective(batch)
            b = len(batch["video"])
            total += float(losses["loss"]) * b
            n += b
            if self.cfg.kind != "tnet":
                targets.append(batch[TARGET_KEY[self.cfg.task]].cpu().numpy())
                preds.append(predictions(self.cfg.task, out).cpu().numpy())
                subjects += list(batch["subject"])
        if n == 0:
            raise ValueError("nothing to evaluate: the dataset is empty")
        result: dict = {"loss": total / n, "neg_loss": -total / n}
        if self.cfg.kind != "tnet":
            y, p = np.concatenate(targets), np.concatenate(preds)
            result.update(task_metrics(self.cfg.task, y, p, self.num_classes))
            result["_arrays"] = (y, p, subjects)
        return result

    def fit(self, train: Dataset, val: Dataset, test: Dataset | None = None, max_steps: int | None = None) -> dict:
        """Train for cfg.optim.epochs (resuming a stopped run), keep the best validation epoch, test it."""
        self._refuse_changed_resume()
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.cfg.save(self.run_dir / "config.json")
        loader = self._loader(train, train=True)
        self.scheduler = make_scheduler(self.optimizer, self.cfg.optim, len(loader))
        self._resume()
        started = time.perf_counter()
        for epoch in range(self.start_epoch, self.cfg.optim.epochs):
            row = {"epoch": epoch + 1, **self.train_epoch(loader, epoch, max_steps)}
            validate = epoch + 1 >= min(self.cfg.optim.validate_from, self.cfg.optim.epochs)
            if validate:
                with self._averaged_weights():  # the model that is validated and kept (the average, with ema_decay)
                    recalibrate_batchnorm(self.objective, loader, self.device,
                                          self.cfg.optim.bn_recalibration_batches)
                    val_metrics = self.evaluate(val)
                    row.update({f"val_{k}": v for k, v in val_metrics.items() if not k.startswith("_")})
                    score = val_metrics[self.kind_metric]
                    if self.rank == 0 and score > self.best:
                        self.best, self.best_epoch = score, epoch + 1
                        torch.save({"model": self.objective.model.state_dict(), "epoch": epoch + 1,
                                    "val": row}, self.run_dir / "best.pt")
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(score)
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            self.history.append(row)
            if self.rank == 0:
                self._log_row(row)
                self._save_last(epoch)
                shown = f"{score:.4f}" if validate else "not validated yet"
                log.info("epoch %d/%d  train loss %.4f  val %s %s  (best %.4f @ %d)", epoch + 1,
                         self.cfg.optim.epochs, row["train_loss"], self.kind_metric, shown, self.best,
                         self.best_epoch)
        if self.world > 1:
            dist.barrier()
        return self.finish(val, test, time.perf_counter() - started)

    def finish(self, val: Dataset, test: Dataset | None, seconds: float) -> dict:
        best = torch.load(self.run_dir / "best.pt", map_location=self.device, weights_only=True)
        self.objective.model.load_state_dict(best["model"])
        summary: dict = {"kind": self.cfg.kind, "task": self.cfg.task, "best_epoch": best["epoch"],
                         "primary_metric": self.kind_metric, "train_seconds": round(seconds, 1)}
        for name, ds in (("val", val), ("test", test)):
            if ds is None:
                continue
            m = self.evaluate(ds)
            arrays = m.pop("_arrays", None)
            summary[name] = m
            if arrays is not None and self.rank == 0:
                y, p, subjects = arrays
                summary[f"{name}_per_subject"] = per_subject(self.cfg.task, subjects, y, p, self.num_classes)
                self._plot_predictions(name, y, p)
        if self.rank == 0:
            (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
            from training import plots

            plots.learning_curves(self.history, self.run_dir / "learning_curves.png", self.kind_metric)
        return summary

    def _plot_predictions(self, name: str, y: np.ndarray, p: np.ndarray) -> None:
        from training import plots

        if self.cfg.task == "pain":
            labels = list(pain_labels(self.num_classes))
            classes = p.argmax(1) if p.ndim == 2 else p
            plots.confusion(confusion_matrix(y, classes, self.num_classes), labels,
                            self.run_dir / f"confusion_{name}.png", f"{self.cfg.kind}: {name} confusion")
        else:
            plots.va_scatter(y, p, self.run_dir / f"va_scatter_{name}.png", f"{self.cfg.kind}: {name}")

    def _log_row(self, row: dict) -> None:
        """Appends the epoch to metrics.jsonl and rewrites metrics.csv from the history: epochs before
        optim.validate_from have no validation columns, so the CSV's columns are those of every epoch so far."""
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        fields = list(dict.fromkeys(k for r in self.history for k in r))
        tmp = self.run_dir / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            w.writeheader()
            w.writerows(self.history)
        tmp.replace(self.run_dir / "metrics.csv")
