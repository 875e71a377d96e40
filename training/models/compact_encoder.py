"""CompactFrameEncoder: a small plain CNN that keeps where things are in the face crop.

Expressions are geometry: brows a few pixels lower, eyes narrower, the mouth wider or open. A global average pool
throws away *where* a feature fired, so this encoder keeps a coarse spatial grid instead: four 3×3 conv blocks
(conv, BatchNorm, ReLU; the first three halve the resolution), a 2×2 average pool, and a linear map from the
flattened (C, S/16, S/16) grid to the frame embedding. It trains in far fewer steps than a MobileNet from scratch
and costs ≈ 6 MMAC per 64×64 crop, so a CPU trains a student in seconds and serves it in well under a
millisecond per frame.

Input (B, 3, S, S) float32, RGB, ImageNet mean/std normalised, S = `input_size` (a multiple of 16; the grid is
sized for it). Output (B, out_dim).
"""

from __future__ import annotations

import torch
import torch.nn as nn

CHANNELS = (16, 32, 48, 32)  # the four conv blocks' default widths


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class CompactFrameEncoder(nn.Module):
    """Face crop (B, 3, S, S) → frame embedding (B, out_dim), position-aware.

    Args:
        out_dim: size of the frame embedding cached by the streaming service (default 64).
        input_size: side S of the square crop (default 64; a multiple of 16).
        channels: output channels of the four conv blocks (default (16, 32, 48, 32)).
        dropout: dropout before the final projection, training only (default 0.1).
    """

    def __init__(self, out_dim: int = 64, input_size: int = 64, channels: tuple[int, ...] = CHANNELS,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if input_size % 16 or input_size < 16:
            raise ValueError(f"input_size must be a multiple of 16, not {input_size}")
        if len(channels) != 4:
            raise ValueError(f"channels must list the four conv blocks' widths, not {channels}")
        self.out_dim, self.input_size = out_dim, input_size
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(_block(3, c1, 2), _block(c1, c2, 2), _block(c2, c3, 2), _block(c3, c4, 1),
                                      nn.AvgPool2d(2))  # (B, c4, S/16, S/16)
        grid = input_size // 16
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(c4 * grid * grid, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.features(frames)  # (B, C, S/16, S/16)
        return self.proj(self.dropout(x.flatten(1)))  # (B, out_dim)
