"""TemporalHead: a causal temporal convolution network over the cached frame embeddings of the last T frames.

(B, T, in_dim) → joint embedding (B, out_dim), read at the newest frame. Each block is a dilated causal 1D
convolution (padding on the left only, so step t sees frames ≤ t) with a residual connection; dilations
1, 2, 4 with kernel 3 give a receptive field of 15 frames. Any T ≥ 1 works: missing frames behave as zero
padding, and frames older than the receptive field cannot reach the output, so forward only reads the last
`receptive_field` of them — the result is the same and the cost stops growing with T.

This module is exported as its own ONNX graph taking the embeddings window, so that the service runs the
FrameEncoder once per frame and this head over its cache: with the defaults (in 256, hidden 256, out 512)
it costs 0.79 M parameters and ≈ 0.66 MMAC per frame of the window, at most ≈ 10 MMAC (T ≥ 15) against
77 MMAC for one FrameEncoder call.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalConvBlock(nn.Module):
    """x + Conv1d(GELU(LayerNorm(x))) with left padding: step t sees steps t − (k − 1)·dilation … t."""

    def __init__(self, dim: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.left_pad = (kernel - 1) * dilation
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, dilation=dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(x)).transpose(1, 2)  # (B, C, T)
        h = F.pad(h, (self.left_pad, 0))  # (B, C, pad + T)
        h = self.conv(h).transpose(1, 2)  # (B, T, C)
        return x + self.dropout(h)


class TemporalHead(nn.Module):
    """Causal TCN: frame embeddings (B, T, in_dim) → joint embedding (B, out_dim) at the last frame.

    Args:
        in_dim: frame embedding size (FrameEncoder.out_dim; default 256).
        hidden_dim: width of the temporal convolutions (default 256).
        out_dim: joint embedding size — what is distilled (default 512, the teacher's fusion width).
        kernel: temporal kernel size (default 3).
        dilations: one causal block per entry (default (1, 2, 4): receptive field 15 frames).
        dropout: dropout inside the blocks, training only (default 0.1).
        delta: also feed each step's change from the window's first frame, e_t − e_0 (default False): an
            expression is a change of the face, and the difference cancels what stays (identity, light, camera).
    """

    def __init__(
        self,
        in_dim: int = 256,
        hidden_dim: int = 256,
        out_dim: int = 512,
        kernel: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4),
        dropout: float = 0.1,
        delta: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.delta = in_dim, out_dim, delta
        self.receptive_field = 1 + (kernel - 1) * sum(dilations)
        self.input = nn.Linear(2 * in_dim if delta else in_dim, hidden_dim)
        self.blocks = nn.ModuleList(CausalConvBlock(hidden_dim, kernel, d, dropout) for d in dilations)
        self.norm = nn.LayerNorm(hidden_dim)
        self.output = nn.Linear(hidden_dim, out_dim)

    def sequence(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Causal features for every step: (B, T, in_dim) → (B, T, hidden_dim)."""
        if self.delta:
            embeddings = torch.cat([embeddings, embeddings - embeddings[:, :1]], dim=-1)  # (B, T, 2·in_dim)
        x = self.input(embeddings)  # (B, T, H)
        for block in self.blocks:
            x = block(x)  # (B, T, H)
        return self.norm(x)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        # all that reaches the last step: its receptive field (with delta, the first frame of the window as well)
        window = embeddings if self.delta else embeddings[:, -self.receptive_field :]  # (B, ≤ T, in_dim)
        x = self.sequence(window)[:, -1]  # (B, H): the newest frame has seen the whole window
        return self.output(x)  # (B, out_dim)
