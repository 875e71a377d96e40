"""AudioEncoder: the privileged audio backbone of the affect teacher (Aff-Wild2).

A small VGG-style CNN on a log-mel spectrogram (B, 1, n_mels, frames): 64 mel bins over a 1 s window (≈ 100
frames at a 10 ms hop); any size ≥ 16×16 works (global pooling). Four stages of two 3×3 conv–BN–ReLU and a 2×2
average pool. Output (B, out_dim). With the defaults: 1.3 M parameters, ≈ 0.32 GMAC for a 64×101 log-mel.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def conv2d_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AudioEncoder(nn.Module):
    """Log-mel (B, in_channels, n_mels, frames) → (B, out_dim).

    Args:
        out_dim: embedding size (default 512, the teacher's modality width).
        channels: channels of the four stages (default (32, 64, 128, 256)).
        in_channels: input channels (default 1).
    """

    def __init__(
        self, out_dim: int = 512, channels: tuple[int, ...] = (32, 64, 128, 256), in_channels: int = 1
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        stages: list[nn.Module] = []
        c_in = in_channels
        for c_out in channels:
            stages += [conv2d_bn_relu(c_in, c_out), conv2d_bn_relu(c_out, c_out), nn.AvgPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.proj = nn.Linear(c_in, out_dim)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        if logmel.ndim != 4:
            raise ValueError(f"AudioEncoder expects a log-mel (B, 1, n_mels, frames), got shape {tuple(logmel.shape)}")
        x = self.features(logmel)  # (B, C, n_mels/16, frames/16)
        x = x.mean(dim=(2, 3))  # (B, C)
        return self.proj(x)  # (B, out_dim)
