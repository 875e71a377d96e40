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


def ordinal_targets(target: torch.Tensor, num_classes: int, sigma: float) -> torch.Tensor:
    """(N,) ordered class indices → (N, C) soft targets q_k ∝ exp(−(k − y)² / 2σ²): the mass spreads to the
    neighbouring levels, the more the larger σ."""
    k = torch.arange(num_classes, device=target.device, dtype=torch.float32)
    return (-((k[None] - target[:, None].float()) ** 2) / (2.0 * sigma**2)).softmax(1)  # (N, C)


class OrdinalCrossEntropy(nn.Module):
    """Cross-entropy against `ordinal_targets`: the pain levels are ordered stimulus temperatures, so calling a PA3
    clip PA4 costs less than calling it BL1, and the classes share what they teach about the same visible change.
    The prediction is still the arg-max class; σ → 0 gives the plain cross-entropy."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not sigma > 0:
            raise ConfigError(f"the ordinal targets' sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        q = ordinal_targets(target, logits.shape[1], self.sigma).to(logits.dtype)
        return -(q * logits.log_softmax(1)).sum(1).mean()


def create_task_loss(task: Task, ordinal_sigma: float = 0.0) -> nn.Module:
    """``pain``: logits (N, C) vs levels (N,), cross-entropy, or with ``ordinal_sigma`` > 0 the cross-entropy
    against soft ordinal targets; ``affect``: (N, 2) vs (N, 2), 1 − CCC."""
    if task == "pain":
        return OrdinalCrossEntropy(ordinal_sigma) if ordinal_sigma > 0 else nn.CrossEntropyLoss()
    if task == "affect":
        if ordinal_sigma:
            raise ConfigError("ordinal targets are for the pain levels; the affect task loss takes no options")
        return CCCLoss()
    raise ConfigError(f"unknown task {task!r}; expected 'pain' or 'affect'")


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy between (N, C) logits and (N,) class indices (the pain task loss); a scalar."""
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
