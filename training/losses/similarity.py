"""Row normalisation and cosine-similarity matrices that stay finite for any batch.

Shared by the structural losses (PKDOT, SMPKD, PKT) and by the point-to-point PKD loss.
"""

import torch
import torch.nn.functional as F

_NORM_EPS = 1e-30  # rows are rescaled to max-abs 1 first, so only an all-zero row ever meets this floor


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Unit-L2 rows of ``x`` (B, d); an all-zero row stays zero.

    Each row is first divided by its largest absolute entry (a detached positive factor, which cannot change the
    normalised row or its gradient), so rows of norm 1e-30 or 1e30 neither underflow nor overflow in float32.
    """
    scale = x.detach().abs().amax(dim=1, keepdim=True)  # (B, 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # (B, 1) zero rows keep scale 1
    return F.normalize(x / scale, p=2.0, dim=1, eps=_NORM_EPS)  # (B, d)


def cosine_similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """A[i, j] = <x_i, x_j> / (‖x_i‖ ‖x_j‖) for the rows of ``x`` (B, d); 0 wherever a row is all zeros."""
    z = normalize_rows(x)  # (B, d)
    return z @ z.T  # (B, B)
