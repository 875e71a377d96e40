"""Task losses: cross-entropy for pain levels, 1 − CCC for valence/arousal.

Lin's concordance correlation coefficient (Lin, Biometrics 1989), with population (1/N) moments:

    CCC(x, y) = 2·cov(x, y) / (var(x) + var(y) + (mean(x) − mean(y))²)  ∈ [−1, 1]

It is 1 only when y = x, −1 when y = −x around a common mean; unlike Pearson's r it penalises shifts and scale.
"""

import torch
import torch.nn.functional as F
from torch import nn

from pkdot_contract.tasks import Task
from training.errors import ConfigError

_CCC_EPS = 1e-8  # added to the denominator: two constant series give 0 instead of 0/0


def ccc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Lin's CCC along dim 0: (N,) series give a scalar, (N, D) give one value per column (D,).

    Usable as a metric (pass detached tensors, or numpy arrays, which are converted) and inside a loss.
    """
    x = torch.as_tensor(x)
    y = torch.as_tensor(y, device=x.device)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    y = y.to(x.dtype)
    if x.shape != y.shape or x.ndim not in (1, 2) or x.shape[0] < 1:
        raise ValueError(f"ccc needs two (N,) or (N, D) series of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)  # (D,) or ()
    var_x = ((x - mean_x) ** 2).mean(dim=0)  # (D,)
    var_y = ((y - mean_y) ** 2).mean(dim=0)  # (D,)
    cov = ((x - mean_x) * (y - mean_y)).mean(dim=0)  # (D,)
    return 2.0 * cov / (var_x + var_y + (mean_x - mean_y) ** 2 + _CCC_EPS)  # (D,)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions (valence, arousal) of 1 − CCC, for (N, D) predictions and targets; a scalar in [0, 2]."""
    return (1.0 - ccc(pred, target)).mean()  # ()


class CCCLoss(nn.Module):
    """1 − CCC per dimension, averaged (the affect task loss). ``mask`` (N,) bool drops unannotated frames."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            pred, target = pred[mask], target[mask]  # (N', D)
        return ccc_loss(pred, target)


def create_task_loss(task: Task, **kwargs: object) -> nn.Module:
    """Cross-entropy (``pain``: logits (N, 5) vs levels (N,)) or 1 − CCC (``affect``: (N, 2) vs (N, 2))."""
    if task == "pain":
        return nn.CrossEntropyLoss(**kwargs)
    if task == "affect":
        if kwargs:
            raise ConfigError(f"the affect task loss takes no options, got {sorted(kwargs)}")
        return CCCLoss()
    raise ConfigError(f"unknown task {task!r}; expected 'pain' or 'affect'")


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy between (N, C) logits and (N,) class indices (the pain task loss); a scalar."""
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
