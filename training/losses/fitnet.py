"""FitNets hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015), on the joint embeddings.

    L_hint = ‖r(z_s) − z_t‖² / (B·d_t)     (mean squared error)

r is a learnable linear regressor when the student and teacher dims differ, the identity otherwise. Its parameters
belong to this module: put ``loss.parameters()`` in the student's optimiser.
"""

import torch
import torch.nn.functional as F
from torch import nn

from training.errors import ConfigError
from training.losses.base import KDLoss, check_embeddings


def fitnet_loss(teacher_emb: torch.Tensor, student_emb: torch.Tensor) -> torch.Tensor:
    """MSE between (already regressed) student and teacher embeddings, both (B, d); the teacher is detached."""
    check_embeddings(teacher_emb, student_emb, same_dim=True)
    return F.mse_loss(student_emb, teacher_emb.detach())  # () mean over B·d


class FitNetLoss(KDLoss):
    """``weight``·L_hint; pass ``student_dim`` and ``teacher_dim`` when they differ to get the linear regressor."""

    def __init__(self, weight: float = 1.0, student_dim: int | None = None, teacher_dim: int | None = None) -> None:
        super().__init__(weight)
        for name, dim in (("student_dim", student_dim), ("teacher_dim", teacher_dim)):
            if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
                raise ConfigError(f"{name} must be a positive int or None, got {dim!r}")
        needs_regressor = student_dim is not None and teacher_dim is not None and student_dim != teacher_dim
        self.regressor: nn.Module = nn.Linear(student_dim, teacher_dim) if needs_regressor else nn.Identity()

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_embeddings(teacher_emb, student_emb)
        hint = self.regressor(student_emb)  # (B, d_t)
        if hint.shape[1] != teacher_emb.shape[1]:
            raise ConfigError(
                f"fitnet: student dim {hint.shape[1]} != teacher dim {teacher_emb.shape[1]}; "
                "create it with student_dim and teacher_dim to add the linear regressor"
            )
        return self.weight * fitnet_loss(teacher_emb, hint)
