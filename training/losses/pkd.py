"""Point-to-point privileged distillation (PKD / M2PKD, Aslam et al., CVPR Workshops 2023).

    L_PKD = (1/B) Σ_i (1 − cos(z_t,i, z_s,i))

Each student embedding is pulled towards the direction of its own sample's teacher embedding.
"""

import torch

from training.losses.base import KDLoss, check_embeddings
from training.losses.similarity import normalize_rows


def pkd_loss(teacher_emb: torch.Tensor, student_emb: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between teacher and student embeddings, both (B, d); a scalar in [0, 2]."""
    check_embeddings(teacher_emb, student_emb, same_dim=True)
    z_t = normalize_rows(teacher_emb.detach())  # (B, d)
    z_s = normalize_rows(student_emb)  # (B, d)
    cos = (z_t * z_s).sum(dim=1)  # (B,)
    return (1.0 - cos).mean()  # ()


class PKDLoss(KDLoss):
    """``weight``·L_PKD; see ``pkd_loss``."""

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.weight * pkd_loss(teacher_emb, student_emb)
