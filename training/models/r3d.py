"""R3D18: the 3D ResNet-18 clip model of the paper (Tran et al., "A Closer Look at Spatiotemporal Convolutions",
CVPR 2018), written so that its state_dict keys and shapes are exactly those of torchvision's
`torchvision.models.video.r3d_18`: a Kinetics-400 checkpoint saved from torchvision loads with
`training.models.weights.load_visual_weights` without renaming.

Input (B, 3, T, H, W) — torchvision's layout (channels before time). Output logits (B, num_classes) from
`forward`, or the pooled 512-d clip features from `features`. With the defaults: 33.37 M parameters
(33.17 M without fc); ≈ 40.7 GMAC for a 16×112×112 clip, ≈ 27.0 GMAC for the paper's 10×112×112 clips.
Note: torchvision's Kinetics weights expect the Kinetics mean/std (0.432, 0.395, 0.376) / (0.228, 0.221, 0.217).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class BasicBlock3D(nn.Module):
    """Two 3×3×3 convolutions with a residual; keys conv1.0/conv1.1, conv2.0/conv2.1, downsample.0/.1."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm3d(c_out),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm3d(c_out),
        )
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm3d(c_out),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class R3D18(nn.Module):
    """3D ResNet-18: clip (B, 3, T, H, W) → logits (B, num_classes) (400 = Kinetics-400, torchvision's default)."""

    feature_dim = 512

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        self.layer1 = self._make_layer(64, 64, stride=1)
        self.layer2 = self._make_layer(64, 128, stride=2)
        self.layer3 = self._make_layer(128, 256, stride=2)
        self.layer4 = self._make_layer(256, 512, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_layer(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock3D(c_in, c_out, stride), BasicBlock3D(c_out, c_out))

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.stem(clip)  # (B, 64, T, H/2, W/2)
        x = self.layer1(x)  # (B, 64, T, H/2, W/2)
        x = self.layer2(x)  # (B, 128, T/2, H/4, W/4)
        x = self.layer3(x)  # (B, 256, T/4, H/8, W/8)
        x = self.layer4(x)  # (B, 512, T/8, H/16, W/16)
        return self.avgpool(x).flatten(1)  # (B, 512)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(clip))  # (B, num_classes)
