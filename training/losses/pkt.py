"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV 2018), with the cosine kernel of the paper (§3.2).

    K_ij = (cos(z_i, z_j) + 1) / 2 ∈ [0, 1]                                    similarities mapped to [0, 1]
    p_{j|i} = K_ij / Σ_l K_il                                                 conditional probabilities, per row
    L_PKT = (1/B) Σ_i KL(p^t_{·|i} ‖ p^s_{·|i}) = (1/B) Σ_ij p^t_{j|i} log(p^t_{j|i} / p^s_{j|i})

As in the authors' code the row includes j = i, and a small δ inside the logarithm keeps it finite when a student
probability is 0. The authors' code averages over the B² entries; averaging the per-row KL over B rows (here) is
that value times B.
"""

import torch

from training.losses.base import KDLoss, check_embeddings
from training.losses.similarity import cosine_similarity_matrix

_DELTA = 1e-7  # inside the log: log((p_t + δ) / (p_s + δ))


def _conditional_probabilities(emb: torch.Tensor) -> torch.Tensor:
    """p_{j|i} from the cosine kernel mapped to [0, 1]; rows sum to 1. (B, d) -> (B, B)."""
    kernel = (cosine_similarity_matrix(emb) + 1.0) / 2.0  # (B, B) in [0, 1]
    return kernel / kernel.sum(dim=1, keepdim=True).clamp_min(_DELTA)  # (B, B) row-stochastic


def pkt_loss(teacher_emb: torch.Tensor, student_emb: torch.Tensor) -> torch.Tensor:
    """Mean per-row KL(p^t ‖ p^s) for teacher (B, d_t) and student (B, d_s) embeddings; a scalar >= 0."""
    check_embeddings(teacher_emb, student_emb)
    p_t = _conditional_probabilities(teacher_emb.detach())  # (B, B)
    p_s = _conditional_probabilities(student_emb)  # (B, B)
    kl = p_t * torch.log((p_t + _DELTA) / (p_s + _DELTA))  # (B, B)
    return kl.sum(dim=1).mean()  # ()


class PKTLoss(KDLoss):
    """``weight``·L_PKT; see ``pkt_loss``."""

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.weight * pkt_loss(teacher_emb, student_emb)
