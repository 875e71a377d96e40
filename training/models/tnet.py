"""TNet: hallucinates privileged features from visual ones (PKDOT, Aslam et al., FG 2024).

An MLP 512 → 256 → 128 → 256 → 512 (ReLU between layers, linear output), trained beforehand to map the teacher's
visual features to its privileged features (MMD or MSE), then loaded into the student that has no privileged
modality at test time. With the defaults: 0.33 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class TNet(nn.Module):
    """visual features (B, in_dim) → hallucinated privileged features (B, out_dim).

    Args:
        in_dim: visual feature size (default 512).
        out_dim: privileged feature size (default 512).
        hidden: hidden layer sizes (default (256, 128, 256)).
    """

    def __init__(self, in_dim: int = 512, out_dim: int = 512, hidden: tuple[int, ...] = (256, 128, 256)) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        dims = (in_dim, *hidden, out_dim)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, visual: torch.Tensor) -> torch.Tensor:
        return self.net(visual)  # (B, out_dim)
