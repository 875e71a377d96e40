"""No distillation: the visual-only student trained on its task loss alone (the lower bound of the comparison)."""

import torch

from training.losses.base import KDLoss, check_embeddings


class NoKDLoss(KDLoss):
    """Returns a scalar 0 on the student's device and dtype, usable in ``task_loss + kd_loss`` and in backward()."""

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_embeddings(teacher_emb, student_emb)
        zero = student_emb.new_zeros(())  # () a leaf: never NaN, whatever the embeddings hold
        return zero.requires_grad_(student_emb.requires_grad and torch.is_grad_enabled())
