"""PKDOT: structural privileged distillation with optimal transport (Aslam et al., IEEE FG 2024, arXiv 2401.15489).

The student copies the *structure* of the teacher's embedding space — the cosine similarities between the samples
of a batch — through a debiased Sinkhorn divergence between per-sample similarity profiles (DESIGN.md §2):

    A_t, A_s = cos(T, T), cos(S, S)                  (B, B)   teacher detached
    Ā = A − min(A)                                    (B, B)   each shifted by its own global minimum
    K_i = anchors of row i, chosen on A_t only        (B, k)   sorted: "bottom" ascending, "top" descending
    X_i = Ā_t[i, K_i],  Y_i = Ā_s[i, K_i]             (B, k)   two uniform clouds of B points in R^k
    L_OT = S_ε(X, Y),  C = ½‖x − y‖²,  ε = 0.01                 see ``training.losses.sinkhorn``

The value and its gradient are computed in float64 and returned in the student's dtype. Gradients reach the student
only; see ``sinkhorn.py`` for the envelope-theorem gradient.
"""

from typing import Literal

import torch

from training.errors import ConfigError
from training.losses.base import KDLoss, check_embeddings
from training.losses.similarity import cosine_similarity_matrix
from training.losses.sinkhorn import DEFAULT_N_ITER, DEFAULT_TOL, check_sinkhorn_options, sinkhorn_divergence

Anchors = Literal["bottom", "top"]
ANCHOR_MODES: tuple[str, ...] = ("bottom", "top")


def check_pkdot_options(k: int, eps: float, anchors: str, n_iter: int, tol: float) -> None:
    """ConfigError for an invalid k, ε, anchor mode, iteration budget or tolerance."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k (anchors per row) must be an int >= 1, got {k!r}")
    if anchors not in ANCHOR_MODES:
        raise ConfigError(f"anchors must be one of {ANCHOR_MODES}, got {anchors!r}")
    check_sinkhorn_options(eps, n_iter, tol)


def anchor_clouds(
    teacher_emb: torch.Tensor, student_emb: torch.Tensor, *, k: int = 30, anchors: Anchors = "bottom"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two point clouds X (teacher) and Y (student) of PKDOT, each (B, min(k, B)), in float64.

    Row i holds the shifted similarities of sample i to its k anchors, in the anchors' sorted order on A_t:
    "bottom" = the k least similar, ascending (released code); "top" = the k most similar, descending (the paper's
    wording; the row's own column is a candidate, so it usually comes first). Ties keep column order.
    """
    check_embeddings(teacher_emb, student_emb)
    if anchors not in ANCHOR_MODES:
        raise ConfigError(f"anchors must be one of {ANCHOR_MODES}, got {anchors!r}")
    batch = teacher_emb.shape[0]
    k = min(k, batch)
    a_t = cosine_similarity_matrix(teacher_emb.detach().to(torch.float64))  # (B, B)
    a_s = cosine_similarity_matrix(student_emb.to(torch.float64))  # (B, B)
    a_t = a_t - a_t.min()  # (B, B) Ā_t >= 0
    a_s = a_s - a_s.min()  # (B, B) Ā_s >= 0
    order = torch.sort(a_t, dim=1, descending=anchors == "top", stable=True).indices  # (B, B)
    anchor_idx = order[:, :k]  # (B, k) K_i
    x = torch.gather(a_t, 1, anchor_idx)  # (B, k) X_i = Ā_t[i, K_i]
    y = torch.gather(a_s, 1, anchor_idx)  # (B, k) Y_i = Ā_s[i, K_i]
    return x, y


def pkdot_loss(
    teacher_emb: torch.Tensor,
    student_emb: torch.Tensor,
    *,
    k: int = 30,
    eps: float = 0.01,
    anchors: Anchors = "bottom",
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
) -> torch.Tensor:
    """L_OT = S_ε(X, Y) between the anchor clouds of teacher (B, d_t) and student (B, d_s) embeddings; a scalar.

    Args:
        k: anchors per row (30 in the paper); clipped to the batch size.
        eps: entropic regularisation ε = blur² (0.01, i.e. geomloss ``blur=0.1``).
        anchors: "bottom" (k least similar, released code) or "top" (k most similar, paper's wording).
        n_iter, tol: log-domain Sinkhorn budget and marginal tolerance (a RuntimeWarning if not reached).
    """
    check_pkdot_options(k, eps, anchors, n_iter, tol)
    x, y = anchor_clouds(teacher_emb, student_emb, k=k, anchors=anchors)  # (B, k), (B, k)
    loss = sinkhorn_divergence(x, y, eps=eps, n_iter=n_iter, tol=tol)  # ()
    out_dtype = student_emb.dtype if student_emb.is_floating_point() else torch.get_default_dtype()
    return loss.to(out_dtype)


class PKDOTLoss(KDLoss):
    """λ·L_OT (λ = ``weight`` = 0.6 in the paper); see ``pkdot_loss``. Ignores the logits."""

    def __init__(
        self,
        weight: float = 0.6,
        k: int = 30,
        eps: float = 0.01,
        anchors: Anchors = "bottom",
        n_iter: int = DEFAULT_N_ITER,
        tol: float = DEFAULT_TOL,
    ) -> None:
        super().__init__(weight)
        check_pkdot_options(k, eps, anchors, n_iter, tol)
        self.k, self.eps, self.anchors, self.n_iter, self.tol = k, float(eps), anchors, n_iter, float(tol)

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = pkdot_loss(
            teacher_emb, student_emb, k=self.k, eps=self.eps, anchors=self.anchors, n_iter=self.n_iter, tol=self.tol
        )
        return self.weight * loss

    def extra_repr(self) -> str:
        return f"weight={self.weight}, k={self.k}, eps={self.eps}, anchors={self.anchors!r}, n_iter={self.n_iter}"
