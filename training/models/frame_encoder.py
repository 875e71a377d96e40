"""FrameEncoder: a small MobileNetV2-style 2D CNN that embeds one face crop.

The streaming student runs it once per webcam frame, so it is the part of the deployed model whose cost matters.
Building block: the inverted residual of MobileNetV2 (Sandler et al., CVPR 2018) — a 1×1 expansion, a 3×3
depthwise convolution and a linear 1×1 projection, with a residual connection when the shape is kept.

Input (B, 3, H, W) float32, RGB, already normalised with the ImageNet mean/std (112×112 by default; any size
≥ 32 works thanks to the global pooling). Output (B, out_dim).

Cost with the defaults (width 1.0, feature_dim 512, out_dim 256), measured with training.models.complexity:
2.11 M parameters, 0.077 GMAC (0.15 GFLOP) per 112×112 frame, 0.024 GMAC at 64×64; ≈ 7 ms per 112×112 frame
(batch 1, 2 CPU threads, torch eager).
"""

from __future__ import annotations

import torch
import torch.nn as nn

# (expansion t, output channels c, repeats n, stride of the first repeat s) — MobileNetV2's table 2.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _round_channels(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor` (never below 90 % of the request)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def conv_bn_act(
    c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise (stride) → 1×1 linear projection, plus the input when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(c_in, hidden, 1))
        layers.append(conv_bn_act(hidden, hidden, 3, stride, groups=hidden))  # depthwise
        layers.append(conv_bn_act(hidden, c_out, 1, act=False))  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class FrameEncoder(nn.Module):
    """Face crop (B, 3, H, W) → frame embedding (B, out_dim).

    Args:
        out_dim: size of the frame embedding cached by the streaming service (default 256).
        width: channel multiplier of every stage (default 1.0; 0.5 halves the cost).
        feature_dim: channels of the last 1×1 convolution before global pooling (default 512).
        dropout: dropout before the final projection, training only (default 0.1).
    """

    def __init__(self, out_dim: int = 256, width: float = 1.0, feature_dim: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.out_dim = out_dim
        c = _round_channels(32 * width)
        layers: list[nn.Module] = [conv_bn_act(3, c, 3, stride=2)]
        for t, c_stage, n, s in STAGES:
            c_out = _round_channels(c_stage * width)
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        layers.append(conv_bn_act(c, feature_dim, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(feature_dim, out_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in")  # fan_in: depthwise layers keep the variance
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.features(frames)  # (B, feature_dim, H/32, W/32)
        x = self.pool(x).flatten(1)  # (B, feature_dim)
        return self.proj(self.dropout(x))  # (B, out_dim)
