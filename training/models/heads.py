"""Task heads on the joint embedding z: pain classification and valence/arousal regression.

`TASK_OUTPUT` (pkdot_contract.tasks) names the key each task's prediction takes in every model's output dict.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pkdot_contract.tasks import TASK_OUTPUT, TASKS
from training.errors import ConfigError

__all__ = ["TASKS", "TASK_OUTPUT", "AffectHead", "PainHead", "check_task", "create_head"]


class PainHead(nn.Module):
    """z (B, in_dim) → pain logits (B, num_classes): 5 ordinal levels (BL1, PA1..PA4) or 2 (BL1 vs PA4)."""

    def __init__(self, in_dim: int, num_classes: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(z))  # (B, num_classes)


class AffectHead(nn.Module):
    """z (B, in_dim) → (valence, arousal) (B, 2), each squashed into [-1, 1] with tanh."""

    def __init__(self, in_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(self.dropout(z)))  # (B, 2): [:, 0] valence, [:, 1] arousal


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {TASKS}")
    return task


def create_head(task: str, in_dim: int, num_classes: int = 5, dropout: float = 0.0) -> nn.Module:
    """PainHead for task "pain", AffectHead for task "affect"."""
    if check_task(task) == "pain":
        return PainHead(in_dim, num_classes, dropout)
    return AffectHead(in_dim, dropout)
