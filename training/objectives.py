"""What each training run optimises, as small modules that return a dict of named losses (mdistiller style).

    TeacherObjective   task loss of the multimodal teacher                        (pkdot train-teacher)
    TNetObjective      T-Net: teacher visual features -> privileged features (MMD) (pkdot train-tnet)
    DistillObjective   student task loss + λ·KD(teacher z, student z) with the teacher frozen (pkdot distill)

`batch` is the dict a dataset yields, moved to the device: `video` (B, T, 3, S, S), the privileged input
(`signal` for BioVid, `audio` for Aff-Wild2) and the target (`label` (B,) or `va` (B, 2)).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from training.losses import NoKDLoss, TNetLoss, create_kd_loss, create_task_loss

TARGET_KEY = {"pain": "label", "affect": "va"}
OUTPUT_KEY = {"pain": "logits", "affect": "va"}


def mixed_precision(module: nn.Module, batch: dict) -> contextlib.AbstractContextManager:
    """bf16 autocast around a forward pass while `module` is in training mode with `module.precision == "bf16"`
    (training steps and the BatchNorm recalibration passes, which see what training sees); evaluation stays in
    float32."""
    on = getattr(module, "precision", "fp32") == "bf16" and module.training
    return torch.autocast(batch["video"].device.type, dtype=torch.bfloat16, enabled=on)


def as_float32(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model outputs back in float32, so losses never compute in bf16."""
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}


def privileged_input(batch: dict) -> torch.Tensor:
    return batch["signal"] if "signal" in batch else batch["audio"]


def predictions(task: str, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Class probabilities (B, C) (pain) or the (B, 2) valence/arousal (affect)."""
    return out["logits"].softmax(1) if task == "pain" else out["va"]


class TeacherObjective(nn.Module):
    def __init__(self, teacher: nn.Module, task: str, ordinal_sigma: float = 0.0) -> None:
        super().__init__()
        self.model, self.task = teacher, task
        self.task_loss = create_task_loss(task, ordinal_sigma)

    def forward_model(self, batch: dict) -> dict[str, torch.Tensor]:
        with mixed_precision(self, batch):
            return as_float32(self.model(batch["video"], privileged_input(batch)))

    def forward(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        out = self.forward_model(batch)
        loss = self.task_loss(out[OUTPUT_KEY[self.task]], batch[TARGET_KEY[self.task]])
        return {"loss": loss, "task": loss.detach()}, out


class TNetObjective(nn.Module):
    """Trains `model` (a TNet) to map the frozen teacher's visual features to its privileged features."""

    def __init__(self, tnet: nn.Module, teacher: nn.Module, kind: str = "mmd") -> None:
        super().__init__()
        self.model, self.teacher = tnet, teacher.eval().requires_grad_(False)
        self.loss = TNetLoss(kind)
        self.mse = nn.MSELoss()

    def train(self, mode: bool = True) -> TNetObjective:
        super().train(mode)
        self.teacher.eval()  # the frozen teacher never leaves eval mode (dropout, batch norm statistics)
        return self

    def forward_model(self, batch: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            t = self.teacher(batch["video"], privileged_input(batch))
        return {"privileged": self.model(t["visual"]), "target": t["privileged"]}

    def forward(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        with torch.no_grad():
            t = self.teacher(batch["video"], privileged_input(batch))
        fake = self.model(t["visual"])  # (B, privileged_dim)
        loss = self.loss(fake, t["privileged"])
        return {"loss": loss, "mse": self.mse(fake, t["privileged"]).detach()}, {"privileged": fake}


class DistillObjective(nn.Module):
    """loss = task_loss(student) + KD(teacher z, student z[, logits]); the KD module carries λ as its weight."""

    def __init__(self, student: nn.Module, teacher: nn.Module, task: str, method: str, weight: float,
                 params: dict | None = None, teacher_targets: object | None = None, ordinal_sigma: float = 0.0) -> None:
        super().__init__()
        self.model, self.task = student, task
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_targets = teacher_targets  # a training.teacher_targets.TeacherTargets, or None: run the teacher
        self.task_loss = create_task_loss(task, ordinal_sigma)
        self.kd = create_kd_loss(method, task=task, **{"weight": weight, **(params or {})})  # params may set λ

    def train(self, mode: bool = True) -> DistillObjective:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward_model(self, batch: dict) -> dict[str, torch.Tensor]:
        with mixed_precision(self, batch):
            return as_float32(self.model(batch["video"]))

    def forward(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        out = self.forward_model(batch)
        task = self.task_loss(out[OUTPUT_KEY[self.task]], batch[TARGET_KEY[self.task]])
        if not self.training:  # evaluation: the student alone (the teacher needs the privileged input)
            return {"loss": task, "task": task.detach()}, out
        if isinstance(self.kd, NoKDLoss):  # the visual-only student: nothing to ask the teacher
            return {"loss": task, "task": task.detach(), "kd": torch.zeros(())}, out
        if self.teacher_targets is not None:
            t = self.teacher_targets.lookup(batch)
        else:
            with torch.no_grad(), mixed_precision(self, batch):
                t = as_float32(self.teacher(batch["video"], privileged_input(batch)))
        kd = self.kd(t["embedding"], out["embedding"], t.get("logits"), out.get("logits"))
        return {"loss": task + kd, "task": task.detach(), "kd": kd.detach()}, out
