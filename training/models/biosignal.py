"""BiosignalEncoder: the privileged physiological backbone of the pain teacher.

Two options (`kind`):
- "spectrogram" (the paper's): a ResNet-18 with `in_channels` (default 1) input channels on the spectrogram of a
  biosignal channel, (B, in_channels, F, T). The paper uses `scipy.signal.spectrogram(nperseg=16, noverlap=4,
  nfft=128)` → F = 65 frequency bins; any F, T ≥ 32 works (global pooling). 11.2 M parameters, ≈ 0.35 GMAC on 65×127.
- "raw": a 1D CNN on the raw normalised window (B, in_channels, L), e.g. 3 channels (GSR, ECG, EMG) × 512 Hz.
  Five stride-2 stages (L/32 before pooling); 2.6 M parameters, ≈ 0.33 GMAC for L = 2816 (5.5 s).

Output: (B, out_dim) embedding (default 512, the teacher's modality width).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.errors import ConfigError
from training.models.resnet2d import ResNet18

BIOSIGNAL_KINDS = ("spectrogram", "raw")


def conv1d_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class RawSignalCNN(nn.Module):
    """(B, C, L) → (B, channels[-1]): a stride-2 stem, then per stage a stride-2 and a stride-1 convolution."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (32, 64, 128, 256, 512), kernel: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv1d_bn_relu(in_channels, channels[0], 7, stride=2)]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [conv1d_bn_relu(c_in, c_out, kernel, stride=2), conv1d_bn_relu(c_out, c_out, kernel)]
        self.net = nn.Sequential(*layers)
        self.feature_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(x)  # (B, C_last, L/32)
        return x.mean(dim=-1)  # (B, C_last)


class BiosignalEncoder(nn.Module):
    """Biosignal window → (B, out_dim).

    Args:
        kind: "spectrogram" (default; input (B, in_channels, F, T)) or "raw" (input (B, in_channels, L)).
        in_channels: spectrogram channels (default 1) or raw signal channels (e.g. 3: gsr, ecg, emg).
        out_dim: embedding size (default 512; a linear projection is added when it differs from the backbone's).
        channels: widths of the raw-signal CNN's stages (default (32, 64, 128, 256, 512); "raw" only).
    """

    def __init__(self, kind: str = "spectrogram", in_channels: int = 1, out_dim: int = 512,
                 channels: tuple[int, ...] = (32, 64, 128, 256, 512)) -> None:
        super().__init__()
        if kind not in BIOSIGNAL_KINDS:
            raise ConfigError(f"unknown biosignal encoder kind {kind!r}; expected one of {BIOSIGNAL_KINDS}")
        self.kind, self.out_dim = kind, out_dim
        self.expected_ndim = 4 if kind == "spectrogram" else 3
        if kind == "spectrogram":
            self.backbone: nn.Module = ResNet18(in_channels=in_channels)
        else:
            self.backbone = RawSignalCNN(in_channels, tuple(channels))
        feature_dim = self.backbone.feature_dim
        self.proj = nn.Identity() if out_dim == feature_dim else nn.Linear(feature_dim, out_dim)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        if signal.ndim != self.expected_ndim:
            layout = "(B, C, F, T)" if self.kind == "spectrogram" else "(B, C, L)"
            raise ValueError(f"{self.kind} biosignal encoder expects {layout}, got shape {tuple(signal.shape)}")
        f = self.backbone(signal)  # (B, 512)
        return self.proj(f)  # (B, out_dim)
