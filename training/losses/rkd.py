"""Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019).

    ψ_D(t_i, t_j) = ‖t_i − t_j‖ / μ,   μ = mean of the B(B−1) off-diagonal distances            (eq. 3-4)
    ψ_A(t_i, t_j, t_k) = ⟨e_ij, e_kj⟩,  e_ij = (t_i − t_j) / ‖t_i − t_j‖                           (eq. 6)
    L_RKD = w_D · mean huber(ψ_D^s − ψ_D^t) + w_A · mean huber(ψ_A^s − ψ_A^t)                      (eq. 5, 7)

huber = smooth L1 with threshold 1; w_D = 25 and w_A = 50 (the paper's values). The angle term builds (B, B, d)
differences and a (B, B, B) angle tensor: 128³ floats ≈ 8 MB. Teacher and student dims may differ.
"""

import torch
import torch.nn.functional as F

from training.losses.base import KDLoss, check_embeddings, check_weight

_DIST_EPS = 1e-12  # squared-distance floor under the square root (finite gradient at coincident points)


def _normalized_distances(emb: torch.Tensor) -> torch.Tensor:
    """ψ_D for every pair: (B, B) distances divided by their off-diagonal mean; the diagonal is 0."""
    batch = emb.shape[0]
    sq = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(dim=-1)  # (B, B)
    off_diag = ~torch.eye(batch, dtype=torch.bool, device=emb.device)  # (B, B)
    dist = torch.where(off_diag, sq.clamp_min(_DIST_EPS).sqrt(), torch.zeros_like(sq))  # (B, B)
    mean = dist[off_diag].mean() if batch > 1 else dist.new_ones(())  # ()
    return dist / mean.clamp_min(_DIST_EPS)  # (B, B)


def _angles(emb: torch.Tensor) -> torch.Tensor:
    """ψ_A for every triplet: cos of the angle at t_j between t_i and t_k, flattened (B·B·B,).

    The i = j differences are identically zero; they are masked out (unit vector 0, no gradient) instead of going
    through a normalisation whose gradient at 0 is 1/eps.
    """
    batch = emb.shape[0]
    diff = emb[None, :, :] - emb[:, None, :]  # (B, B, d) diff[j, i] = t_i − t_j
    norm = (diff**2).sum(dim=2, keepdim=True).clamp_min(_DIST_EPS).sqrt()  # (B, B, 1)
    off_diag = ~torch.eye(batch, dtype=torch.bool, device=emb.device)  # (B, B)
    unit = diff / norm * off_diag[:, :, None]  # (B, B, d) e_ji; zero where i = j
    return torch.bmm(unit, unit.transpose(1, 2)).reshape(-1)  # (B, B, B) -> (B³,)


def rkd_loss(
    teacher_emb: torch.Tensor,
    student_emb: torch.Tensor,
    *,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> torch.Tensor:
    """w_D·L_dist + w_A·L_angle for teacher (B, d_t) and student (B, d_s) embeddings; a scalar. Teacher detached."""
    check_embeddings(teacher_emb, student_emb)
    teacher = teacher_emb.detach()
    loss = student_emb.new_zeros(())  # ()
    if distance_weight:
        psi_t = _normalized_distances(teacher)  # (B, B)
        psi_s = _normalized_distances(student_emb)  # (B, B)
        loss = loss + distance_weight * F.smooth_l1_loss(psi_s, psi_t, beta=1.0)
    if angle_weight:
        ang_t = _angles(teacher)  # (B³,)
        ang_s = _angles(student_emb)  # (B³,)
        loss = loss + angle_weight * F.smooth_l1_loss(ang_s, ang_t, beta=1.0)
    return loss


class RKDLoss(KDLoss):
    """``weight``·(w_D·L_dist + w_A·L_angle); see ``rkd_loss``."""

    def __init__(self, weight: float = 1.0, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__(weight)
        self.distance_weight = check_weight(distance_weight, "distance_weight")
        self.angle_weight = check_weight(angle_weight, "angle_weight")

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = rkd_loss(teacher_emb, student_emb, distance_weight=self.distance_weight, angle_weight=self.angle_weight)
        return self.weight * loss

    def extra_repr(self) -> str:
        return f"weight={self.weight}, distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"
