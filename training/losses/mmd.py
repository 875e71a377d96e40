"""T-Net losses: the T-Net hallucinates privileged features from visual ones and is trained with MMD or MSE.

Maximum mean discrepancy (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, eq. 5, biased V-statistic)
with a mixture of Gaussian kernels:

    MMD²(X, Y) = mean k(x, x') + mean k(y, y') − 2·mean k(x, y),   k(u, v) = Σ_m exp(−‖u − v‖² / σ_m²)

Bandwidths: σ_m² = σ₀² · mult^(m − ⌊n/2⌋), m = 0..n−1 (n = 5, mult = 2: σ₀²·{¼, ½, 1, 2, 4}); the base σ₀² is the
median heuristic — the median of the pairwise squared distances of the pooled sample (detached) — unless given.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from training.errors import ConfigError

_MIN_BANDWIDTH = 1e-12


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_kernel_options(kernel_num: int, kernel_mul: float, bandwidth: float | None) -> None:
    """ConfigError unless kernel_num >= 1 is an int, kernel_mul > 0 and bandwidth (σ₀²) is None or > 0."""
    if isinstance(kernel_num, bool) or not isinstance(kernel_num, int) or kernel_num < 1:
        raise ConfigError(f"kernel_num must be an int >= 1, got {kernel_num!r}")
    if not _is_number(kernel_mul) or kernel_mul <= 0:
        raise ConfigError(f"kernel_mul must be a finite number > 0, got {kernel_mul!r}")
    if bandwidth is not None and (not _is_number(bandwidth) or bandwidth <= 0):
        raise ConfigError(f"bandwidth (σ₀²) must be a finite number > 0 or None, got {bandwidth!r}")


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖x_i − y_j‖² for x (N, d), y (M, d); (N, M), clamped at 0 (no square root, so smooth everywhere)."""
    sq = (x * x).sum(dim=1)[:, None] + (y * y).sum(dim=1)[None, :] - 2.0 * (x @ y.T)  # (N, M)
    return sq.clamp_min(0.0)


def mmd_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel_num: int = 5,
    kernel_mul: float = 2.0,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """Biased MMD² between samples x (N, d) and y (M, d) with a mixture of ``kernel_num`` Gaussian kernels.

    ``bandwidth`` fixes the base σ₀² (a squared length); None uses the median heuristic on the pooled sample.
    Differentiable in both x and y; detach the target yourself when it is fixed (``TNetLoss`` does).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or x.shape[0] < 1 or y.shape[0] < 1:
        raise ValueError(f"x and y must be (N, d) and (M, d) samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    check_kernel_options(kernel_num, kernel_mul, bandwidth)
    n = x.shape[0]
    pooled = torch.cat([x, y], dim=0)  # (N+M, d)
    sq = _squared_distances(pooled, pooled)  # (N+M, N+M)
    if bandwidth is None:
        off_diag = ~torch.eye(pooled.shape[0], dtype=torch.bool, device=pooled.device)  # (N+M, N+M)
        base = sq.detach()[off_diag].median() if pooled.shape[0] > 1 else sq.new_ones(())  # () median heuristic
    else:
        base = sq.new_tensor(float(bandwidth))  # ()
    base = base.clamp_min(_MIN_BANDWIDTH)
    scales = kernel_mul ** (torch.arange(kernel_num, dtype=sq.dtype, device=sq.device) - kernel_num // 2)  # (n,)
    kernel = torch.exp(-sq[None, :, :] / (base * scales)[:, None, None]).sum(dim=0)  # (n, N+M, N+M) -> (N+M, N+M)
    k_xx = kernel[:n, :n].mean()  # ()
    k_yy = kernel[n:, n:].mean()  # ()
    k_xy = kernel[:n, n:].mean()  # ()
    return k_xx + k_yy - 2.0 * k_xy  # () MMD², >= 0 up to rounding


TNetKind = Literal["mmd", "mse"]


def tnet_loss(
    pred: torch.Tensor, target: torch.Tensor, *, kind: TNetKind = "mmd", **mmd_options: float
) -> torch.Tensor:
    """T-Net loss between hallucinated (N, d) and real (N, d) privileged features; the target is detached.

    ``kind="mmd"`` matches the two feature distributions (``mmd_loss``); ``kind="mse"`` matches them sample by sample.
    """
    if kind == "mmd":
        return mmd_loss(pred, target.detach(), **mmd_options)
    if kind == "mse":
        if mmd_options:
            raise ConfigError(f"the mse T-Net loss takes no kernel options, got {sorted(mmd_options)}")
        return F.mse_loss(pred, target.detach())
    raise ConfigError(f"unknown T-Net loss {kind!r}; expected 'mmd' or 'mse'")


class TNetLoss(nn.Module):
    """The T-Net training loss, ``kind`` "mmd" (5 Gaussian kernels, default) or "mse"; see ``tnet_loss``."""

    def __init__(
        self, kind: TNetKind = "mmd", kernel_num: int = 5, kernel_mul: float = 2.0, bandwidth: float | None = None
    ) -> None:
        super().__init__()
        if kind not in ("mmd", "mse"):
            raise ConfigError(f"unknown T-Net loss {kind!r}; expected 'mmd' or 'mse'")
        check_kernel_options(kernel_num, kernel_mul, bandwidth)
        self.kind = kind
        self.mmd_options = {"kernel_num": kernel_num, "kernel_mul": kernel_mul, "bandwidth": bandwidth}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        options = self.mmd_options if self.kind == "mmd" else {}
        return tnet_loss(pred, target, kind=self.kind, **options)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", {self.mmd_options}" if self.kind == "mmd" else "")
