"""Visual backbones: a face clip (B, T, 3, H, W) → visual features (B, out_dim).

Every model of the package takes clips in this one layout (frames first, then RGB channels; float32, ImageNet
mean/std normalised). Two backbones (`VISUAL_BACKBONES`):
- "streaming": FrameEncoder on every frame, then the causal TemporalHead over the frame embeddings. What the
  deployed student uses: the service runs the encoder once per frame and the head over the cached embeddings.
- "r3d18": the paper's R3D18 clip model (its classifier unused), optionally initialised from a local
  torchvision checkpoint (`weights=PATH`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from training.models.compact_encoder import CHANNELS as COMPACT_CHANNELS
from training.models.compact_encoder import CompactFrameEncoder
from training.models.frame_encoder import FrameEncoder
from training.models.r3d import R3D18
from training.models.registry import build
from training.models.temporal_head import TemporalHead
from training.models.weights import load_visual_weights


FRAME_ENCODERS = ("mobilenet", "compact")


def make_frame_encoder(kind: str, out_dim: int, width: float, dropout: float, input_size: int) -> nn.Module:
    """The per-frame encoder of a streaming backbone: "mobilenet" (FrameEncoder) or "compact"."""
    if kind == "mobilenet":
        return FrameEncoder(out_dim=out_dim, width=width, dropout=dropout)
    if kind == "compact":
        channels = tuple(max(1, round(c * width)) for c in COMPACT_CHANNELS)  # the defaults at width 1.0
        return CompactFrameEncoder(out_dim=out_dim, input_size=input_size, channels=channels, dropout=dropout)
    from training.errors import ConfigError

    raise ConfigError(f"unknown frame encoder {kind!r}; expected one of {', '.join(FRAME_ENCODERS)}")


class StreamingVisual(nn.Module):
    """FrameEncoder per frame + causal TemporalHead: (B, T, 3, H, W) → (B, out_dim).

    Args:
        frame_dim: frame embedding size (FrameEncoder.out_dim; default 256).
        out_dim: joint embedding size (TemporalHead.out_dim; default 512).
        width: channel multiplier of the frame encoder, either kind (default 1.0).
        hidden_dim: TemporalHead width (default 256).
        dilations: TemporalHead dilations (default (1, 2, 4)).
        dropout: dropout in encoder and head (default 0.1).
        encoder: "mobilenet" (FrameEncoder, any crop size) or "compact" (CompactFrameEncoder, position-aware,
            crops of `input_size`).
        input_size: crop side for the compact encoder (default 64).
        delta: the temporal head also reads each frame's change from the window's first frame (default False).
    """

    def __init__(
        self,
        frame_dim: int = 256,
        out_dim: int = 512,
        width: float = 1.0,
        hidden_dim: int = 256,
        dilations: tuple[int, ...] = (1, 2, 4),
        dropout: float = 0.1,
        encoder: str = "mobilenet",
        input_size: int = 64,
        delta: bool = False,
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.encoder = make_frame_encoder(encoder, frame_dim, width, dropout, input_size)
        self.temporal = TemporalHead(frame_dim, hidden_dim, out_dim, dilations=dilations, dropout=dropout, delta=delta)

    def encode_frames(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) → per-frame embeddings (B, T, frame_dim), one FrameEncoder call per frame."""
        B, T = clip.shape[:2]
        frames = clip.reshape(B * T, *clip.shape[2:])  # (B·T, 3, H, W)
        return self.encoder(frames).view(B, T, -1)  # (B, T, frame_dim)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.encode_frames(clip))  # (B, out_dim)


class R3DVisual(nn.Module):
    """R3D18 features: (B, T, 3, H, W) → (B, 512).

    Args:
        weights: optional path of a local torchvision r3d_18 state dict (its fc is dropped).
    """

    out_dim = R3D18.feature_dim

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.net = R3D18()
        if weights is not None:
            load_visual_weights(self.net, weights)
        self.net.fc = nn.Identity()  # the Kinetics classifier is not used (and would get no gradient)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = clip.transpose(1, 2)  # (B, 3, T, H, W): R3D18's (torchvision's) layout
        return self.net.features(x)  # (B, 512)


VISUAL_BACKBONES = {"streaming": StreamingVisual, "r3d18": R3DVisual}


def create_visual_backbone(name: str = "streaming", **cfg) -> nn.Module:
    return build(VISUAL_BACKBONES, name, "visual backbone", cfg)
