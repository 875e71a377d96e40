"""Structural (similarity-matrix) privileged distillation, SMPKD.

    L_SM = ‖A_t − A_s‖_F / B = sqrt(mean_ij (A_t − A_s)_ij²)

on the (B, B) cosine-similarity matrices of the batch. Dividing the Frobenius norm by B (the square root of the
B² entries) makes the value the root-mean-square difference, comparable across batch sizes. Unlike the released
version (which wrapped the value in a new tensor and so trained nothing), the gradient reaches the student.
"""

import torch

from training.losses.base import KDLoss, check_embeddings
from training.losses.similarity import cosine_similarity_matrix


def smpkd_loss(teacher_emb: torch.Tensor, student_emb: torch.Tensor) -> torch.Tensor:
    """‖A_t − A_s‖_F / B for teacher (B, d_t) and student (B, d_s) embeddings; a scalar in [0, 2]."""
    check_embeddings(teacher_emb, student_emb)
    a_t = cosine_similarity_matrix(teacher_emb.detach())  # (B, B)
    a_s = cosine_similarity_matrix(student_emb)  # (B, B)
    return torch.linalg.matrix_norm(a_t - a_s, ord="fro") / teacher_emb.shape[0]  # ()


class SMPKDLoss(KDLoss):
    """``weight``·L_SM; see ``smpkd_loss``."""

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.weight * smpkd_loss(teacher_emb, student_emb)
