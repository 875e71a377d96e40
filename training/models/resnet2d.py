"""ResNet18: the 2D ResNet-18 (He et al., CVPR 2016) with a configurable number of input channels.

Its state_dict keys follow torchvision's `torchvision.models.resnet18` (conv1, bn1, layer1.0.conv1, …, fc), so a
local torchvision checkpoint loads with `load_visual_weights` when the channel counts agree. Used with one input
channel on biosignal spectrograms, as in the paper's physiological backbone. Input (B, in_channels, H, W) of any
size ≥ 32 (global pooling); `features` → (B, 512). 11.17 M parameters without fc; ≈ 0.35 GMAC on a 65×127
spectrogram.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class BasicBlock2D(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """(B, in_channels, H, W) → features (B, 512), or logits (B, num_classes) when num_classes is set.

    Args:
        in_channels: input channels (default 1: one spectrogram).
        num_classes: size of the `fc` layer; None (default) leaves it out and forward returns the features.
    """

    feature_dim = 512

    def __init__(self, in_channels: int = 1, num_classes: int | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock2D(64, 64), BasicBlock2D(64, 64))
        self.layer2 = nn.Sequential(BasicBlock2D(64, 128, 2), BasicBlock2D(128, 128))
        self.layer3 = nn.Sequential(BasicBlock2D(128, 256, 2), BasicBlock2D(256, 256))
        self.layer4 = nn.Sequential(BasicBlock2D(256, 512, 2), BasicBlock2D(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes) if num_classes is not None else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 64, H/4, W/4)
        x = self.layer2(x)  # (B, 128, H/8, W/8)
        x = self.layer3(x)  # (B, 256, H/16, W/16)
        x = self.layer4(x)  # (B, 512, H/32, W/32)
        return self.avgpool(x).flatten(1)  # (B, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (B, 512)
        return f if self.fc is None else self.fc(f)
