"""The interface every distillation loss follows, so the distiller can swap them by name.

``loss(teacher_emb, student_emb, teacher_logits=None, student_logits=None) -> scalar``: the teacher's tensors are
detached inside every loss, so gradients reach the student only. ``weight`` multiplies the returned value (λ).
"""

import math
from typing import ClassVar

import torch
from torch import nn

from training.errors import ConfigError


def check_weight(weight: float, name: str = "weight") -> float:
    """A finite, non-negative loss weight as a float, or ConfigError."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {weight!r}")
    return float(weight)


def check_embeddings(teacher_emb: torch.Tensor, student_emb: torch.Tensor, *, same_dim: bool = False) -> None:
    """Both embeddings are (B, d) tensors of the same batch size (and the same d when ``same_dim``)."""
    for name, emb in (("teacher_emb", teacher_emb), ("student_emb", student_emb)):
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2:
            shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"{name} must be a (batch, dim) tensor, got {shape}")
        if emb.shape[0] < 1:
            raise ValueError(f"{name} is an empty batch")
    if teacher_emb.shape[0] != student_emb.shape[0]:
        raise ValueError(f"teacher and student batch sizes differ: {teacher_emb.shape[0]} != {student_emb.shape[0]}")
    if same_dim and teacher_emb.shape[1] != student_emb.shape[1]:
        raise ValueError(f"teacher and student dims differ: {teacher_emb.shape[1]} != {student_emb.shape[1]}")


class KDLoss(nn.Module):
    """Base class of the distillation losses in ``KD_LOSSES``.

    ``requires_logits``: the loss reads the logits (so it applies to classification only) instead of the embeddings.
    """

    requires_logits: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = check_weight(weight)

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
